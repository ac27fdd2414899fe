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
    /// Another process listens on the address already.
    #[error(
        "{addr} is already in use: another process listens there; stop it or pass --listen ADDR"
    )]
    InUse {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// The address cannot be bound (not local, not permitted, ...).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A maintenance command was pointed at a data directory that does not
    /// exist (a typo would otherwise create an empty registry).
    #[error(
        "data directory {} does not exist; pass --data DIR of an existing registry",
        shown(path)
    )]
    NoDataDir {
        /// The directory, as given.
        path: PathBuf,
    },
    /// The TLS certificate or key cannot be loaded.
    #[error("cannot load TLS certificate or key")]
    Tls(#[source] std::io::Error),
    /// The server stopped with an error.
    #[error(transparent)]
    Serve(std::io::Error),
    /// An `[[upstream]]` table (or `--upstream`) is not valid.
    #[error("{0}")]
    Upstream(String),
    /// Another setting is not valid; the message says which and how to fix it.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The error of binding `addr`: [`Error::InUse`] when it is taken.
    pub fn bind(addr: std::net::SocketAddr, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            Error::InUse { addr }
        } else {
            Error::Bind { addr, source }
        }
    }
}

/// A relative path as `./path`, so it reads as one.
fn shown(path: &std::path::Path) -> String {
    if path.is_relative() && !path.starts_with(".") && !path.starts_with("..") {
        format!("./{}", path.display())
    } else {
        path.display().to_string()
    }
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_errors_show_relative_paths_as_such() {
        let e = Error::NoDataDir {
            path: "typo".into(),
        };
        assert_eq!(
            e.to_string(),
            "data directory ./typo does not exist; pass --data DIR of an existing registry"
        );
        assert!(Error::NoDataDir {
            path: "/srv/x".into()
        }
        .to_string()
        .contains(" /srv/x "));
        assert!(Error::NoDataDir {
            path: "../x".into()
        }
        .to_string()
        .contains(" ../x "));
    }
}
