//! Rootless mode: the runner run by an ordinary user.
//!
//! Detection ([`active`]): the runner is rootless when it is not root in the
//! initial user namespace, that is when its effective uid is not 0, or when
//! it already runs inside a user namespace (a monitor, a health check or any
//! runner started from within the rootless namespace).
//!
//! Paths ([`state_dir`], [`runtime_dir`]): state in
//! `$XDG_DATA_HOME/strata-runner` (default `~/.local/share/strata-runner`),
//! runtime files in `$XDG_RUNTIME_DIR/strata-runner` (or, without it,
//! `/tmp/strata-runner-<uid>`, which must be a 0700 directory of the user's
//! own). Root keeps `/var/lib/strata-runner`.
//!
//! The user namespace ([`userns`]): every rootless command joins one user
//! namespace per user, held open by a small pause process whose pid is in
//! the runtime directory, or makes it: container root is the user's own
//! uid, container ids 1..=65536 are the user's subordinate range from
//! `/etc/subuid` and `/etc/subgid` ([`subid`]), written by the set-uid
//! `newuidmap`/`newgidmap` of Debian's `uidmap` package (no set-uid helper
//! of our own). Inside it the runner is root over those ids only: it
//! unpacks layers with their owners (mapped), mounts overlayfs with
//! `userxattr` and builds each container's namespaces as usual. Sharing one
//! namespace across commands is what lets `exec`, `stop` and `kill` reach a
//! container a previous command started.
//!
//! Layering: a leaf but for [`crate::sys`] (the pause process's `clone`).

pub mod subid;
pub mod userns;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Errors of rootless mode's setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `XDG_DATA_HOME` nor `HOME` says where the user's data goes.
    #[error("rootless mode: set HOME or XDG_DATA_HOME (where the runner keeps its state)")]
    NoHome,
    /// The runtime directory is not a private directory of this user.
    #[error(
        "rootless mode: runtime directory {path} must be a directory owned by uid {uid} \
         with mode 0700 (it is uid {owner}, mode {mode:04o}); fix it or set XDG_RUNTIME_DIR"
    )]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// Our uid.
        uid: u32,
        /// Its owner.
        owner: u32,
        /// Its mode.
        mode: u32,
    },
    /// A filesystem or process operation failed.
    #[error("rootless mode: {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The subordinate id ranges are missing or unreadable.
    #[error(transparent)]
    SubId(#[from] subid::Error),
    /// Making or joining the user namespace failed.
    #[error("rootless mode: {0}")]
    UserNs(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the runner is rootless: not root in the initial user namespace.
pub fn active() -> bool {
    static ACTIVE: OnceLock<bool> = OnceLock::new();
    *ACTIVE.get_or_init(|| !nix::unistd::geteuid().is_root() || in_user_namespace())
}

/// Whether this process is in a user namespace other than the initial one
/// (whose uid map is the identity over every id).
pub fn in_user_namespace() -> bool {
    let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let first: Vec<&str> = map.split_whitespace().take(3).collect();
    !map.is_empty() && first != ["0", "0", "4294967295"]
}

/// The rootless state root: `$XDG_DATA_HOME/strata-runner`, by default
/// `~/.local/share/strata-runner`.
pub fn state_dir() -> Result<PathBuf> {
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(data) = env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(data).join("strata-runner"));
    }
    let home = env("HOME").ok_or(Error::NoHome)?;
    Ok(PathBuf::from(home).join(".local/share/strata-runner"))
}

/// The rootless runtime directory, created if missing and checked:
/// `$XDG_RUNTIME_DIR/strata-runner`, else `/tmp/strata-runner-<uid>`. It
/// must be a real directory (not a symlink) of this user's, mode 0700: in
/// `/tmp` another user could have made it first.
pub fn runtime_dir() -> Result<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(base) => PathBuf::from(base).join("strata-runner"),
        None => PathBuf::from(format!("/tmp/strata-runner-{uid}")),
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::Io {
                action: "create",
                path: dir,
                source: e,
            })
        }
        _ => {}
    }
    let meta = fs::symlink_metadata(&dir).map_err(|source| Error::Io {
        action: "stat",
        path: dir.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
        return Err(Error::RuntimeDir {
            path: dir,
            uid,
            owner: meta.uid(),
            mode,
        });
    }
    Ok(dir)
}

/// Puts this process in the user's rootless user namespace (see
/// [`userns`]); nothing to do when it is in one already. Call while the
/// process is single-threaded, before anything else is opened.
pub fn enter() -> Result<()> {
    if in_user_namespace() {
        return Ok(());
    }
    userns::join_or_create(&runtime_dir()?)
}
