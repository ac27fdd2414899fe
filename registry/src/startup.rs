//! The error of starting the registry: loading the configuration and the
//! htpasswd file, opening the store, binding the listener, loading TLS.
//!
//! Errors of serving a request are [`crate::error::ApiError`]s instead; this
//! type ends the process (the binary prints it with its causes).

use std::path::PathBuf;

/// Why the registry could not start (or stopped serving).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file cannot be read.
    #[error("cannot read config {}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for [`crate::config::Config`].
    #[error("invalid config {}", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the place in the file.
        #[source]
        source: toml::de::Error,
    },
    /// The htpasswd file cannot be read.
    #[error("cannot read htpasswd {}", path.display())]
    HtpasswdRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An htpasswd line is not `user:hash`.
    #[error("htpasswd line {line}: expected user:hash")]
    HtpasswdSyntax {
        /// The line number, from 1.
        line: usize,
    },
    /// An htpasswd line holds a hash other than bcrypt.
    #[error("htpasswd line {line}: only bcrypt entries are supported (htpasswd -B)")]
    HtpasswdNotBcrypt {
        /// The line number, from 1.
        line: usize,
    },
    /// The stand-in hash (checked for unknown users) cannot be made.
    #[error(transparent)]
    PasswordHash(#[from] bcrypt::BcryptError),
    /// The store cannot be opened, or its start-up work (signing key,
    /// staging cleanup) failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The listening socket cannot be bound or set up.
    #[error(transparent)]
    Listen(std::io::Error),
    /// The TLS certificate or key cannot be loaded.
    #[error("cannot load TLS certificate or key")]
    Tls(#[source] std::io::Error),
    /// The server stopped with an error.
    #[error(transparent)]
    Serve(std::io::Error),
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
