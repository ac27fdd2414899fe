//! The `Store` facade: blobs, uploads, manifests, tags and referrers.
//!
//! Callers (the registry's handlers, the runner) talk only to this type. It
//! validates, orders the byte writes before the metadata commits, and keeps
//! each step idempotent so a crash at any point leaves nothing visible that is
//! not complete. Leftover staging objects are debris for the cleanup to purge.
//!
//! ```text
//! store (Store, StoreConfig, open/close/ping/secret)
//!  ├── blobs      read, mount, delete, whole-blob pushes, the verified commit
//!  ├── browse     read-only views for a UI: repository summaries, tag details, totals
//!  ├── uploads    sessions: the Uploads backend (local data file | S3 parts)
//!  ├── manifests  push (validate, check refs), get (cached bytes), delete, referrers
//!  ├── tags       tag pages (cached lists), repository listing
//!  └── outbox     webhook events: enqueue, claim with a lease, delivered/failed
//! ```
//! `uploads` and `manifests` commit through `blobs`; all use `meta`,
//! `objects`, `layout` and `cache` below.

mod blobs;
mod browse;
mod manifests;
mod outbox;
mod tags;
mod uploads;

use std::path::Path as FsPath;

use crate::cache::{Hashers, ManifestBytes, TagLists};
use crate::local::DiskSpace;
use crate::meta::Meta;
use crate::objects::Objects;
use crate::{layout, Result};

pub use browse::{RepoSort, RepoSummary, StoreTotals, TagDetail};
pub use manifests::{PutManifest, StoredManifest};
pub use tags::TagPage;
use uploads::Uploads;

/// Where the store keeps bytes and metadata, and its policies.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Object storage URL: `file:///path` or `s3://bucket/prefix`.
    pub storage: String,
    /// Database URL: `sqlite://...` or `postgres://...`.
    pub database: String,
    /// Accept manifests that reference blobs or child manifests not in the repository.
    pub allow_sparse: bool,
}

impl StoreConfig {
    /// The embedded default: a file store and a SQLite database inside `dir`.
    pub fn local(dir: &FsPath) -> StoreConfig {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        StoreConfig {
            storage: format!("file://{}", dir.join("storage").display()),
            database: format!("sqlite://{}?mode=rwc", dir.join("registry.db").display()),
            allow_sparse: false,
        }
    }
}

/// The content-addressed store.
pub struct Store {
    pub(crate) objects: Objects,
    pub(crate) meta: Meta,
    /// How upload sessions hold their bytes, chosen once from the storage.
    uploads: Uploads,
    allow_sparse: bool,
    /// Writers that make a blob live (upload commit, mount, manifest push) hold
    /// this shared; the GC sweep holds it exclusively while it deletes, so in
    /// one process a sweep never races a writer reviving the same blob.
    pub(crate) gc_gate: tokio::sync::RwLock<()>,
    /// Running digests of uploads whose chunks all passed through this process.
    hashers: Hashers,
    /// Whole tag lists by repository, with the tag version they were read at.
    tag_lists: TagLists,
    /// Verified manifest bytes by digest.
    manifests: ManifestBytes,
    /// The byte budgets writes are admitted under ([`crate::quota`]).
    pub(crate) quotas: std::sync::RwLock<std::sync::Arc<[crate::Quota]>>,
}

impl Store {
    /// Open (and migrate) a store.
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        let objects = Objects::open(&config.storage)?;
        let meta = Meta::open(&config.database).await?;
        Ok(Store {
            uploads: Uploads::for_objects(&objects),
            objects,
            meta,
            allow_sparse: config.allow_sparse,
            gc_gate: tokio::sync::RwLock::new(()),
            hashers: Hashers::default(),
            tag_lists: TagLists::default(),
            manifests: ManifestBytes::default(),
            quotas: std::sync::RwLock::new(std::sync::Arc::from(Vec::new())),
        })
    }

    /// Close the database connections. A process that wants to be
    /// single-threaded again (to `clone` or `unshare`) closes the store, then
    /// drops the tokio runtime it ran on.
    pub async fn close(&self) {
        self.meta.close().await;
    }

    /// The secret called `name`, stored as `candidate` on first use; every
    /// replica sharing the database gets the same value (e.g. a signing key).
    pub async fn secret(&self, name: &str, candidate: &str) -> Result<String> {
        self.meta.secret(name, candidate).await
    }

    /// Free and total bytes of the filesystem under a local store; `None` on
    /// an object store (S3), whose space is its operator's to watch.
    pub async fn disk_space(&self) -> Result<Option<DiskSpace>> {
        match self.objects.local_root() {
            Some(root) => Ok(Some(crate::local::disk_space(root.to_path_buf()).await?)),
            None => Ok(None),
        }
    }

    /// Check that the database and the object storage answer.
    pub async fn ping(&self) -> Result<()> {
        self.meta.ping().await?;
        match self.objects.head(&layout::blobs_root()).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
