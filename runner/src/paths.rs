//! The one place that builds paths under the runner's state root.
//!
//! ```text
//! <root>/                          (--root, default /var/lib/strata-runner)
//!   store/                         the shared `store` crate's directory: every blob
//!                                  (manifests, configs, layer archives) and image, see
//!                                  [`crate::images`] for how images map onto it
//!     storage/ registry.db         the store's own layout: bytes and SQLite metadata
//!     open.lock                    held while a runner opens (and migrates) the store
//!   layers/<alg>/<hex of diff_id>/ each layer unpacked once, shared by every image
//!   containers/<id>/               per-container state, removed when the container ends
//!     state.json                   owner pid + start time, cgroup, layers in use
//!     upper/ work/ rootfs/         overlay upper, work and mount point
//!     etc/                         hostname, hosts, resolv.conf bound into the container
//!     lower/<n>/                   id-mapped layer mount points (--userns only)
//!   seccomp/<sha256>.bpf           compiled seccomp filters, built once
//!   tmp/                           downloads in progress (*.partial) and unpacks in progress
//!   auth.json                      credentials stored by `runner login`
//! ```

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/strata-runner";

/// The runner's state root.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// A state root at `dir` (nothing is created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the image store (blobs and images), see [`crate::images`].
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

    /// State directory of one container.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// Cached compiled seccomp filter, keyed by a hash of its inputs.
    pub fn seccomp_cache(&self, key: &Digest) -> PathBuf {
        self.dir.join("seccomp").join(format!("{}.bpf", key.hex()))
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

    /// Credentials written by `runner login`.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.join("auth.json")
    }
}
