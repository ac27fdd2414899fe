//! Strata's content-addressed, deduplicated image store.
//!
//! [`Store`] is the facade every caller uses; only it, [`gc`]'s reports,
//! [`manifest`]'s types and the value types (digests, names) are public.
//! Content is written once under its digest and shared by every repository;
//! a repository "has" a blob when the metadata says so. Every blob and
//! manifest is verified against its digest before it becomes visible.
//! The store knows nothing about HTTP.
//!
//! Modules, and which may call which (an arrow is a `use`):
//!
//! ```text
//!  registry, runner ──> Store, StoreConfig, gc::{GcOptions, GcReport}, manifest, Digest, names
//!
//!  store   (facade: store/{blobs, uploads, manifests, tags, outbox})
//!    │       uploads: the Uploads backend, local data file | S3 parts
//!    ├──> manifest   parse + validate; Descriptor, Platform, media types
//!    ├──> cache      in-memory: upload hashers, tag lists, manifest bytes
//!    ├──> meta       all SQL: meta/{blobs, uploads, manifests, tags, repos, gc, outbox}
//!    ├──> objects    Objects: the object_store backend and its local root
//!    ├──> local      local-disk upload data files and staged files
//!    └──> layout     every object key
//!  gc      (impl Store: gc, purge_orphans, fsck) ──> meta, objects, local, layout
//!  retention (impl Store: record_pulls, expire_unpulled; [[retention]]'s
//!            facts, deletes if unchanged, manifest pulls, its lock) ──> meta
//!  quota   (Quota, Usage; impl Store: set_quotas, usage) ──> meta
//!  meta ──> manifest (ParsedManifest)
//!  digest, names   leaf value types, used by all; Error lives here in lib.rs
//!  fault           classifies backend errors (io, object_store, sqlx) for Error's From impls
//! ```
//!
//! Nothing below `store`/`gc` calls up: `meta`, `objects`, `local`, `layout`
//! and `cache` do not know each other (`objects` takes keys from its caller).
#![deny(missing_docs)]

mod cache;
mod digest;
pub mod fault;
pub mod gc;
pub(crate) mod layout;
mod local;
pub mod manifest;
pub(crate) mod meta;
mod names;
pub(crate) mod objects;
pub mod quota;
mod retention;
mod store;

pub use digest::{Algorithm, Digest, Hasher};
pub use fault::{Backend, Fault};
pub use gc::{GcOptions, GcReport, Problem};
pub use local::{start_writeback, DiskSpace};
pub use manifest::{Descriptor, Platform};
pub use meta::{now, now_ms, Effects, NewEvent, OutboxEvent};
pub use names::{Reference, RepoName, Tag, UploadId, MAX_NAME_LEN};
pub use objects::ByteStream;
pub use quota::{Quota, Usage};
pub use retention::{ManifestFact, RetentionFacts, RetentionLock, TagFact};
pub use store::{
    PutManifest, RepoSort, RepoSummary, Store, StoreConfig, StoreTotals, StoredManifest, TagDetail,
    TagPage,
};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string does not follow the grammar.
    #[error("invalid digest {digest:?}")]
    DigestInvalid {
        /// The rejected text.
        digest: String,
    },
    /// A well-formed digest of an algorithm we do not support.
    #[error("unsupported digest algorithm in {digest:?}: use sha256 or sha512")]
    DigestUnsupported {
        /// The rejected text.
        digest: String,
    },
    /// Content does not hash to the digest it was pushed under.
    #[error("content digest is {actual}, not {expected}")]
    DigestMismatch {
        /// The digest the client claimed.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A repository name does not follow the grammar.
    #[error("invalid repository name {name:?}")]
    NameInvalid {
        /// The rejected text.
        name: String,
    },
    /// A tag does not follow the grammar.
    #[error("invalid tag {tag:?}")]
    TagInvalid {
        /// The rejected text.
        tag: String,
    },
    /// The repository holds nothing.
    #[error("repository {name} is not known")]
    NameUnknown {
        /// The repository.
        name: String,
    },
    /// The blob is not in the repository.
    #[error("blob {digest} is not known in this repository")]
    BlobUnknown {
        /// The digest asked for.
        digest: Digest,
    },
    /// The upload session does not exist (or belongs to another repository).
    #[error("upload {id} is not known")]
    UploadUnknown {
        /// The session id.
        id: String,
    },
    /// A chunk does not start where the upload stands.
    #[error("chunk starts at {start}, but the upload has {offset} bytes")]
    UploadOutOfOrder {
        /// Where the chunk claimed to start.
        start: u64,
        /// Bytes the upload holds.
        offset: u64,
    },
    /// Another request is writing to the upload right now.
    #[error("another request is writing to this upload, which holds {offset} bytes")]
    UploadBusy {
        /// Bytes the upload holds.
        offset: u64,
    },
    /// A body's length differs from the declared one.
    #[error("body is {actual} bytes, {expected} were declared")]
    SizeMismatch {
        /// Declared length.
        expected: u64,
        /// Received length (so far).
        actual: u64,
    },
    /// The request body ended early or failed.
    #[error("request body incomplete: {source}")]
    BodyIncomplete {
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A manifest fails validation.
    #[error("invalid manifest: {reason}")]
    ManifestInvalid {
        /// Why.
        reason: String,
    },
    /// A manifest is larger than the limit.
    #[error("manifest is {size} bytes, over the {limit} byte limit")]
    ManifestTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A write would take a quota over its budget.
    #[error(
        "quota {quota} exceeded: {used} bytes used of {limit}, this write needs {adding} more"
    )]
    QuotaExceeded {
        /// The quota's name.
        quota: String,
        /// Its usage before the write.
        used: u64,
        /// The bytes the write would add.
        adding: u64,
        /// Its budget.
        limit: u64,
    },
    /// A write would move or remove a tag that may not change.
    #[error("tag {tag} is immutable (it points to {digest})")]
    TagLocked {
        /// The tag.
        tag: String,
        /// What it points to.
        digest: String,
    },
    /// The manifest is not in the repository.
    #[error("manifest {reference} is not known")]
    ManifestUnknown {
        /// The tag or digest asked for.
        reference: String,
    },
    /// A pushed manifest references content the repository does not hold.
    #[error("manifest references {digest}, which is not in the repository")]
    ManifestBlobUnknown {
        /// The missing reference.
        digest: Digest,
    },
    /// A pushed manifest's descriptor declares a size other than the stored content's.
    #[error("descriptor of {digest} declares {declared} bytes; the stored content has {stored}")]
    DescriptorSizeMismatch {
        /// The referenced content.
        digest: Digest,
        /// The size the descriptor declares.
        declared: u64,
        /// The size of the content the repository holds.
        stored: u64,
    },
    /// Bad configuration.
    #[error("{detail}")]
    Config {
        /// What is wrong.
        detail: String,
    },
    /// Stored data does not make sense.
    #[error("corrupt store: {detail}")]
    Corrupt {
        /// What is wrong.
        detail: String,
    },
    /// The object store failed; `fault` is its kind, when it is a known one.
    #[error("storage: {source}")]
    Storage {
        /// What kind of failure, classified once where the error entered.
        fault: Option<Fault>,
        /// The backend's error.
        source: object_store::Error,
    },
    /// The database failed; `fault` is its kind, when it is a known one.
    #[error("database: {source}")]
    Database {
        /// What kind of failure, classified once where the error entered.
        fault: Option<Fault>,
        /// The backend's error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<object_store::Error> for Error {
    fn from(source: object_store::Error) -> Error {
        Error::Storage {
            fault: fault::of_storage(&source),
            source,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Error {
        Error::Database {
            fault: fault::of_database(&source),
            source,
        }
    }
}

impl Error {
    pub(crate) fn from_io(e: std::io::Error) -> Error {
        match e.downcast::<object_store::Error>() {
            Ok(e) => Error::from(e),
            Err(e) => Error::BodyIncomplete { source: e },
        }
    }

    /// Which backend failed and how, when this is a backend failure of a
    /// known kind (see [`fault`]); `None` for everything else, including the
    /// client's mistakes and failures of no known kind (bugs).
    pub fn fault(&self) -> Option<(Backend, Fault)> {
        match self {
            Error::Storage { fault: Some(f), .. } => Some((Backend::Storage, *f)),
            Error::Database { fault: Some(f), .. } => Some((Backend::Database, *f)),
            _ => None,
        }
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
