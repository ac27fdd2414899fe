//! The one place that builds paths under the runner's state root.
//!
//! ```text
//! <root>/                          (--root, default /var/lib/strata-runner), 0700
//!   store/                         the shared `store` crate's directory: every blob
//!                                  (manifests, configs, layer archives) and image, see
//!                                  [`crate::image::store`] for how images map onto it
//!     storage/ registry.db         the store's own layout: bytes and SQLite metadata
//!     open.lock                    held while a runner opens (and migrates) the store
//!   layers/<alg>/<hex of diff_id>/ each layer unpacked once, shared by every image (layers/ 0700)
//!   containers.lock                flock: held while a name is checked and a container dir made
//!   containers/<id>/               per-container state (0700; owned by the container's root
//!                                  with --userns); a foreground run's is removed when it ends,
//!                                  a detached one's (`run -d`) by `rm`
//!     state.json                   the record: owner (monitor or runner) pid + start time,
//!                                  cgroup, layers, status, exit code, times, health
//!     lock                         flock: held while state.json is changed
//!     config.json                  a detached container's configuration (written once)
//!     container.log[.N]            a detached container's output, JSON lines, rotated
//!     monitor.log                  its monitor's own errors
//!     upper/ work/ rootfs/         overlay upper, work and mount point
//!     etc/                         hostname, hosts, resolv.conf bound into the container
//!     lower/<n>/                   id-mapped layer mount points (--userns only)
//!     slirp4netns.json             rootless network: slirp4netns's pid and published
//!                                  ports, while it runs (see [`crate::network::slirp`])
//!     slirp4netns.log              its output; slirp4netns.sock its API socket, removed
//!                                  once the ports are published
//!   seccomp/<sha256>.bpf           compiled seccomp filters, built once
//!   image-cache/<sha256>.json      local images by reference (hash) as `run` reads them
//!   image-cache.lock               flock: held while an image-cache entry is filled or dropped
//!   build/cache/<hex of key>.json  `runner build`'s step cache: the layer a step made
//!   build/stat/<hex>.json          `runner build`'s stat cache of one context dir
//!   tmp/                           downloads in progress (*.partial) and unpacks in progress
//!   auth.json                      credentials stored by `runner login` (0600)
//! ```
//!
//! The root is private (0700, owned by the runner's user) and [`Root::prepare`]
//! checks it on every start, refusing a root other users can reach, as ssh
//! refuses a readable key: layers keep their modes, so a set-uid-root file
//! from an image, one that root inside a container made in its upper dir, or
//! a device node would be usable by any local user who can walk the path.
//! The directories right under it are 0700 too. A `--userns` container's
//! root (an unprivileged host uid) never walks this path: the runner hands it
//! its state directory as a descriptor opened before it switches (see
//! [`crate::sandbox`]).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::image::digest::Digest;

/// Errors preparing the state root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("state root {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The root is not a directory.
    #[error("state root {0} is not a directory")]
    NotADirectory(PathBuf),
    /// Other users can reach the root.
    #[error(
        "state root {path} is accessible to other users (mode {mode:04o}): the set-uid files \
         and device nodes of its layers would be theirs to use; run `chmod 700 {path}`"
    )]
    Accessible {
        /// The root.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The root belongs to another user.
    #[error(
        "state root {path} belongs to uid {owner}, not to this user (uid {uid}); \
         run `chown {uid} {path}` or choose another --root"
    )]
    Owner {
        /// The root.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The runner's effective uid.
        uid: u32,
    },
    /// A parent directory lets other users replace the root.
    #[error(
        "state root {root}: its parent {path} (uid {owner}, mode {mode:04o}) can be written by \
         other users, who could swap the root; use a root whose parents only root or you can write"
    )]
    UnsafeParent {
        /// The root.
        root: PathBuf,
        /// The parent directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
}

/// Creates `dir` (not its parents) with mode 0700, or, if it exists as a
/// directory, takes group and other permissions off it. Used for every
/// directory of the state root that holds layers, containers or the store.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(dir)?;
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode() & 0o7700))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Asks ext4 to put each directory made under `dir` in a block group of
/// its own (`chattr +T`). Layers and scratch trees come and go by the
/// thousand files; without it they share a block group, and in a journal-less
/// ext4 every new inode first steps over each one deleted there in the last
/// minute, which made unpacking 10,000 files take 0.4-1.1 s instead of 0.12 s.
/// A hint only: other filesystems ignore or refuse it, and so does this.
fn spread_children(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = crate::sys::fs::add_inode_flags(&f, crate::sys::fs::FS_TOPDIR_FL);
    }
}

/// Whether a parent directory is safe: only root or `uid` can write it, or
/// it is sticky (like `/tmp`), so nobody else can rename what is in it.
fn safe_parent(meta: &fs::Metadata, uid: u32) -> bool {
    (meta.uid() == 0 || meta.uid() == uid)
        && (meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0)
}

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/strata-runner";

/// The runner's state root.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// A state root at `dir`, unchecked and with nothing created yet (tests
    /// and tools; `runner` itself uses [`Root::prepare`]).
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// The state root at `dir`, ready for use: created 0700 if missing (its
    /// parents with the usual modes), then checked like ssh checks a key. A
    /// root that other users can enter, read or write, or that belongs to
    /// another user, is refused with what to run, never fixed behind the
    /// owner's back (it may be shared on purpose, or was already exposed); so
    /// is one whose parents others could write. The directories right under
    /// it are created 0700 (or narrowed to it).
    pub fn prepare(dir: impl Into<PathBuf>) -> Result<Root, Error> {
        let dir = dir.into();
        let io_err = |action, path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("create", &dir)(e))
            }
            _ => {}
        }
        let canonical = fs::canonicalize(&dir).map_err(io_err("resolve", &dir))?;
        let meta = fs::metadata(&canonical).map_err(io_err("stat", &canonical))?;
        let uid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            return Err(Error::NotADirectory(dir));
        }
        if meta.uid() != uid {
            return Err(Error::Owner {
                path: dir,
                owner: meta.uid(),
                uid,
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(Error::Accessible {
                path: dir,
                mode: meta.mode() & 0o7777,
            });
        }
        for parent in canonical.ancestors().skip(1) {
            let m = fs::metadata(parent).map_err(io_err("stat", parent))?;
            if !safe_parent(&m, uid) {
                return Err(Error::UnsafeParent {
                    root: dir,
                    path: parent.to_owned(),
                    owner: m.uid(),
                    mode: m.mode() & 0o7777,
                });
            }
        }
        // Absolute: the sandbox mounts from it after changing directory.
        let dir = std::path::absolute(&dir).map_err(io_err("resolve", &dir))?;
        let root = Root { dir };
        for sub in [
            root.store_dir(),
            root.layers_dir(),
            root.containers_dir(),
            root.tmp_dir(),
            root.seccomp_dir(),
        ] {
            create_private_dir(&sub).map_err(io_err("create", &sub))?;
            spread_children(&sub);
        }
        Ok(root)
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the image store (blobs and images), see [`crate::image::store`].
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Lock file serializing the opening of the image store.
    pub fn store_lock(&self) -> PathBuf {
        self.store_dir().join("open.lock")
    }

    /// Directory holding every unpacked layer.
    pub fn layers_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// The unpacked layer with this diff_id.
    pub fn layer(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir()
            .join(diff_id.algorithm().name())
            .join(diff_id.hex())
    }

    /// Directory of per-container state.
    pub fn containers_dir(&self) -> PathBuf {
        self.dir.join("containers")
    }

    /// Networks and their address leases (`runner network`, see `network::store`).
    pub fn networks_dir(&self) -> PathBuf {
        self.dir.join("networks")
    }

    /// State directory of one container.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// Directory of compiled seccomp filters.
    pub fn seccomp_dir(&self) -> PathBuf {
        self.dir.join("seccomp")
    }

    /// Cached compiled seccomp filter, keyed by a hash of its inputs.
    pub fn seccomp_cache(&self, key: &Digest) -> PathBuf {
        self.seccomp_dir().join(format!("{}.bpf", key.hex()))
    }

    /// Scratch space for downloads and unpacks in progress (same filesystem as the rest).
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// A partial download of `digest`, kept across interruptions for resuming.
    pub fn partial_download(&self, digest: &Digest) -> PathBuf {
        self.tmp_dir().join(format!(
            "{}-{}.partial",
            digest.algorithm().name(),
            digest.hex()
        ))
    }

    /// `runner build`'s step cache: one record per step key.
    pub fn build_cache(&self, key: &Digest) -> PathBuf {
        self.dir
            .join("build/cache")
            .join(format!("{}.json", key.hex()))
    }

    /// `runner build`'s record of a URL `ADD` fetched (its validators), by
    /// the URL's hash.
    pub fn build_url(&self, key: &Digest) -> PathBuf {
        self.dir
            .join("build/urls")
            .join(format!("{}.json", key.hex()))
    }

    /// `runner build`'s cache mounts (`RUN --mount=type=cache`), each beside its lock file.
    pub fn build_mounts_dir(&self) -> PathBuf {
        self.dir.join("build/mounts")
    }

    /// `runner build`'s stat cache for the context directory whose path hashes to `key`.
    pub fn build_stat_cache(&self, key: &Digest) -> PathBuf {
        self.dir
            .join("build/stat")
            .join(format!("{}.json", key.hex()))
    }

    /// The local images as `run` last read them, by reference (see
    /// `image::store::cache`): one file per reference, named by its hash.
    pub fn image_cache(&self, reference: &str) -> PathBuf {
        self.dir.join("image-cache").join(format!(
            "{}.json",
            crate::image::digest::sha256_of(reference.as_bytes()).hex()
        ))
    }

    /// Lock serializing the image cache's fills and drops.
    pub fn image_cache_lock(&self) -> PathBuf {
        self.dir.join("image-cache.lock")
    }

    /// Credentials written by `runner login`.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn prepare_creates_a_private_root_and_private_subdirectories() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::prepare(tmp.path().join("a/b/state")).unwrap();
        assert_eq!(mode(root.dir()), 0o700);
        for sub in [root.layers_dir(), root.containers_dir(), root.store_dir()] {
            assert_eq!(mode(&sub), 0o700, "{}", sub.display());
        }
        // An old, open subdirectory is narrowed; a second start is fine.
        fs::set_permissions(root.layers_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        Root::prepare(root.dir()).unwrap();
        assert_eq!(mode(&root.layers_dir()), 0o700);
    }

    #[test]
    fn prepare_refuses_an_open_root_and_a_parent_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Root::prepare(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("run `chmod 700 {}`", dir.display())),
            "{err}"
        );
        assert_eq!(mode(&dir), 0o755, "refused, not changed");
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Root::prepare(shared.join("state")).unwrap_err();
        assert!(matches!(err, Error::UnsafeParent { .. }), "{err}");
        // Sticky like /tmp: others cannot rename what is ours.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        Root::prepare(shared.join("state")).unwrap();
    }
}
