//! The `Store` facade: blobs, uploads, manifests, tags and referrers.
//!
//! Callers (the registry's handlers, the runner) talk only to this type. It
//! validates, orders the byte writes before the metadata commits, and keeps
//! each step idempotent so a crash at any point leaves nothing visible that is
//! not complete. Leftover staging objects are debris for the cleanup to purge.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use object_store::ObjectStore;

use crate::local::{LockedData, StagedFile};
use crate::manifest::{self, Descriptor, RefKind};
use crate::meta::{Meta, UploadRow};
use crate::objects::{self, ByteStream};
use crate::{layout, Algorithm, Digest, Error, Hasher, Reference, RepoName, Result, Tag, UploadId};

/// Repositories whose tag lists are kept in memory at once (the cache is
/// emptied when full: the lists that matter come back on their next read).
const TAG_CACHE_REPOS: usize = 256;
/// Bytes of manifests kept in memory at most (manifests are a few KiB).
const MANIFEST_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A repository's whole tag list and the tag version it was read at.
type VersionedTags = (i64, Arc<Vec<String>>);

/// Longer tag lists are not cached, which bounds the cache's memory.
const TAG_CACHE_MAX_TAGS: usize = 100_000;

/// The part id recorded for appends to a local upload's single data file.
const DATA_PART: &str = "data";

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

/// A page of a repository's sorted tags: a window on the shared (cached)
/// list, so serving a 10,000-tag list copies no tag.
#[derive(Debug, Clone)]
pub struct TagPage {
    all: Arc<Vec<String>>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for TagPage {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.all[self.range.clone()]
    }
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// Digest of the stored manifest.
    pub digest: Digest,
    /// Its subject, when it has one.
    pub subject: Option<Digest>,
    /// The tags now pointing at it.
    pub tags: Vec<Tag>,
}

/// A manifest as read back.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Digest of the manifest bytes.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The exact bytes pushed, unless only metadata was asked for.
    pub bytes: Option<Bytes>,
}

/// The content-addressed store.
pub struct Store {
    pub(crate) objects: Arc<dyn ObjectStore>,
    /// Set for a local file store, whose writes we fsync ourselves.
    pub(crate) local_root: Option<std::path::PathBuf>,
    pub(crate) meta: Meta,
    allow_sparse: bool,
    /// Writers that make a blob live (upload commit, mount, manifest push) hold
    /// this shared; the GC sweep holds it exclusively while it deletes, so in
    /// one process a sweep never races a writer reviving the same blob.
    pub(crate) gc_gate: tokio::sync::RwLock<()>,
    /// Running SHA-256 of uploads whose chunks all passed through this process,
    /// keyed by upload, with the offset it covers. Lets a chunked upload finish
    /// without reading its bytes back; absent after a restart, then we re-read.
    hashers: Mutex<HashMap<UploadId, (u64, Hasher)>>,
    /// Whole tag lists by repository, with the tag version they were read at.
    tag_lists: Mutex<HashMap<String, VersionedTags>>,
    /// Verified manifest bytes by digest, and their total size.
    manifests: Mutex<(HashMap<Digest, Bytes>, usize)>,
}

impl Store {
    /// Open (and migrate) a store.
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        let objects = objects::open(&config.storage)?;
        let meta = Meta::open(&config.database).await?;
        Ok(Store {
            objects,
            local_root: objects::local_root(&config.storage),
            meta,
            allow_sparse: config.allow_sparse,
            gc_gate: tokio::sync::RwLock::new(()),
            hashers: Mutex::new(HashMap::new()),
            tag_lists: Mutex::new(HashMap::new()),
            manifests: Mutex::new((HashMap::new(), 0)),
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

    /// Check that the database and the object storage answer.
    pub async fn ping(&self) -> Result<()> {
        self.meta.ping().await?;
        match self.objects.head(&layout::blobs_root()).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    // ---- blobs ----

    /// Whether the blob is stored, whatever repository holds it.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.meta.blob_size(digest).await?.is_some())
    }

    /// Size of a blob in `repo`.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .repo_blob_size(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown {
                digest: digest.clone(),
            })
    }

    /// Stream a blob (or a byte range of it). Check visibility with [`Store::blob_size`] first.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        objects::read_fast(
            self.objects.as_ref(),
            self.local_root.as_deref(),
            &layout::blob(digest),
            range,
        )
        .await
    }

    /// Remove a blob from a repository. The bytes stay until garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown {
                digest: digest.clone(),
            })
        }
    }

    /// Make a blob of `from` visible in `repo` without copying it. Returns
    /// false when `from` does not hold it. The source is required: whether
    /// the caller may read `from` is the caller's check, and a blob is never
    /// linked by digest alone (that would expose every repository's content).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool> {
        let _gate = self.gc_gate.read().await;
        Ok(self.meta.mount_blob(repo, digest, from).await?.is_some())
    }

    /// Up to `limit` repositories that hold `digest`, in name order: the
    /// candidates for a mount without `from`. Only the caller can tell which
    /// of them the client may read; a blob must be mounted from one of those.
    pub async fn repos_holding_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<RepoName>> {
        Ok(self
            .meta
            .repos_holding_blob(digest, limit)
            .await?
            .into_iter()
            .filter_map(|r| r.parse().ok())
            .collect())
    }

    /// Push a whole blob in one go.
    pub async fn put_blob<S>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let id = self.start_upload(repo).await?;
        let result = match self.append_upload(repo, &id, Some(0), len, body).await {
            Ok(_) => self.finish_upload(repo, &id, digest).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            // The session was private to this request: drop it with its bytes.
            let _ = self.cancel_upload(repo, &id).await;
        }
        result
    }

    /// Store the local file at `path` as a blob of `repo`, verifying its
    /// digest. The file is consumed: on a local store on the same filesystem
    /// it is moved in rather than copied; otherwise it is copied, then removed.
    /// On a digest mismatch it is removed and nothing becomes visible.
    pub async fn put_blob_file(
        &self,
        repo: &RepoName,
        digest: &Digest,
        path: &std::path::Path,
    ) -> Result<()> {
        if let Some(root) = self.local_root.as_deref() {
            let dir = root.join(layout::staging_root().as_ref());
            if let Some(staged) = StagedFile::adopt(dir, path.to_path_buf()).await? {
                let (actual, size) = staged.digest(digest.algorithm()).await?;
                if &actual != digest {
                    return Err(Error::DigestMismatch {
                        expected: digest.clone(),
                        actual,
                    });
                }
                let staging = layout::staging_file(staged.name());
                return self
                    .commit_verified(repo, digest, size, &staging, None)
                    .await;
            }
        }
        let file = tokio::fs::File::open(path).await.map_err(Error::from_io)?;
        let len = file.metadata().await.map_err(Error::from_io)?.len();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let put = self.put_blob(repo, digest, Some(len), body).await;
        if matches!(put, Ok(()) | Err(Error::DigestMismatch { .. })) {
            tokio::fs::remove_file(path).await.map_err(Error::from_io)?;
        }
        put
    }

    // ---- uploads ----

    /// Open an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId> {
        let id = UploadId::new();
        // The session row comes first: GC purges staging files whose session
        // it does not know, and a file created before its row could go.
        self.meta.create_upload(&id, repo).await?;
        if let Some(path) = self.local_data(&id) {
            if let Err(e) = LockedData::create(path).await {
                let _ = self.meta.delete_upload(&id).await;
                return Err(e);
            }
        }
        Ok(id)
    }

    async fn upload(&self, repo: &RepoName, id: &UploadId) -> Result<UploadRow> {
        match self.meta.upload(id).await? {
            Some(up) if up.repo == repo.as_str() => Ok(up),
            _ => Err(Error::UploadUnknown { id: id.to_string() }),
        }
    }

    /// Bytes received so far by an upload.
    pub async fn upload_offset(&self, repo: &RepoName, id: &UploadId) -> Result<u64> {
        Ok(self.upload(repo, id).await?.size)
    }

    /// Append a chunk. `start`, when given, must equal the bytes received so
    /// far; `len`, when given, is the exact chunk length. Returns the new size.
    /// A failed append leaves the session as it was.
    pub async fn append_upload<S>(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        // On a local store, hold the upload's data file locked from before we
        // read its offset until the new offset is recorded.
        let data = self.lock_local_data(repo, id).await?;
        let up = self.upload(repo, id).await?;
        if let Some(start) = start {
            if start != up.size {
                return Err(Error::UploadOutOfOrder {
                    start,
                    offset: up.size,
                });
            }
        }
        let mut hasher = self.take_hasher(id, up.size);
        if let Some(data) = data {
            let (_data, written, hasher) = data.append(up.size, body, hasher, len).await?;
            if written > 0 && !self.meta.append_part(id, &up, DATA_PART, written).await? {
                return Err(Error::UploadOutOfOrder {
                    start: up.size,
                    offset: self.upload(repo, id).await?.size,
                });
            }
            self.put_hasher(id, up.size + written, hasher);
            return Ok(up.size + written);
        }
        let part_id = UploadId::new().to_string();
        let key = layout::upload_part(id, &part_id);
        let written =
            objects::write_stream(self.objects.as_ref(), &key, body, hasher.as_mut(), len).await?;
        if written == 0 {
            self.objects.delete(&key).await?;
            self.put_hasher(id, up.size, hasher);
            return Ok(up.size);
        }
        if !self.meta.append_part(id, &up, &part_id, written).await? {
            self.objects.delete(&key).await?;
            let now = self.upload(repo, id).await?.size;
            return Err(Error::UploadOutOfOrder {
                start: up.size,
                offset: now,
            });
        }
        self.put_hasher(id, up.size + written, hasher);
        Ok(up.size + written)
    }

    /// Path of an upload's data file, on a local store.
    fn local_data(&self, id: &UploadId) -> Option<std::path::PathBuf> {
        let root = self.local_root.as_deref()?;
        Some(root.join(layout::upload_data(id).as_ref()))
    }

    /// On a local store, lock the upload's data file; `UploadBusy` while
    /// another request writes to the upload.
    async fn lock_local_data(&self, repo: &RepoName, id: &UploadId) -> Result<Option<LockedData>> {
        let Some(path) = self.local_data(id) else {
            return Ok(None);
        };
        match LockedData::try_lock(path, id).await? {
            Some(data) => Ok(Some(data)),
            None => Err(Error::UploadBusy {
                offset: self.upload(repo, id).await?.size,
            }),
        }
    }

    fn take_hasher(&self, id: &UploadId, offset: u64) -> Option<Hasher> {
        let cached = self.hashers.lock().expect("hasher map poisoned").remove(id);
        match cached {
            Some((at, h)) if at == offset => Some(h),
            _ if offset == 0 => Some(Algorithm::Sha256.hasher()),
            _ => None,
        }
    }

    fn put_hasher(&self, id: &UploadId, offset: u64, hasher: Option<Hasher>) {
        if let Some(h) = hasher {
            self.hashers
                .lock()
                .expect("hasher map poisoned")
                .insert(id.clone(), (offset, h));
        }
    }

    /// Verify an upload against `digest` and commit it as a blob of `repo`.
    /// On a digest mismatch the session is cancelled and nothing becomes visible.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<()> {
        // On a local store the data file stays locked until the blob is
        // committed, so no append can write into it once it is verified.
        let data = match self.lock_local_data(repo, id).await {
            Err(Error::UploadUnknown { .. }) if self.local_root.is_some() => {
                return self.finish_renamed(repo, id, digest).await;
            }
            locked => locked?,
        };
        let up = self.upload(repo, id).await?;
        let (staging, actual, _data) = match data {
            Some(data) => {
                let data = data.truncate(up.size).await?;
                let staging = layout::upload_data(id);
                let cached = self
                    .take_hasher(id, up.size)
                    .filter(|h| h.algorithm() == digest.algorithm());
                let actual = match cached {
                    Some(h) => h.finish(),
                    None => self.hash_staged(&staging, digest.algorithm()).await?,
                };
                (staging, actual, Some(data))
            }
            None => {
                let (staging, actual) = self.assemble_parts(id, &up, digest).await?;
                (staging, actual, None)
            }
        };
        if &actual != digest {
            self.cancel_upload(repo, id).await?;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.commit_verified(repo, digest, up.size, &staging, Some(id))
            .await?;
        self.delete_upload_dir(id).await?;
        Ok(())
    }

    /// Make verified staging bytes the blob `digest` of `repo`: bytes first,
    /// then the metadata (which also ends the upload session `upload`).
    async fn commit_verified(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        staging: &object_store::path::Path,
        upload: Option<&UploadId>,
    ) -> Result<()> {
        let _gate = self.gc_gate.read().await;
        let root = self.local_root.as_deref();
        let blob = layout::blob(digest);
        objects::commit(self.objects.as_ref(), root, staging, &blob).await?;
        self.meta.commit_blob(repo, digest, size, upload).await?;
        // A GC in another process may have swept the stored copy we deduplicated
        // onto just before our metadata committed: then commit ours after all.
        if matches!(
            self.objects.head(&blob).await,
            Err(object_store::Error::NotFound { .. })
        ) {
            objects::commit(self.objects.as_ref(), root, staging, &blob).await?;
        }
        Ok(())
    }

    /// Finish a local upload whose data file is gone while its session is
    /// not: a finish that moved the verified file under its digest was killed
    /// before its metadata committed, and the client retries. Only verified
    /// bytes are ever moved there, so a stored blob of the session's size
    /// completes the upload.
    async fn finish_renamed(&self, repo: &RepoName, id: &UploadId, digest: &Digest) -> Result<()> {
        let up = self.upload(repo, id).await?;
        let _gate = self.gc_gate.read().await;
        match self.objects.head(&layout::blob(digest)).await {
            Ok(stored) if stored.size == up.size => {
                self.meta
                    .commit_blob(repo, digest, up.size, Some(id))
                    .await?;
                self.delete_upload_dir(id).await
            }
            _ => Err(Error::UploadUnknown { id: id.to_string() }),
        }
    }

    /// Digest of one stored staging object, read back.
    async fn hash_staged(
        &self,
        staging: &object_store::path::Path,
        algorithm: Algorithm,
    ) -> Result<Digest> {
        let hasher = objects::hash_objects(
            &self.objects,
            self.local_root.as_deref(),
            std::slice::from_ref(staging),
            algorithm.hasher(),
            None,
        )
        .await?;
        Ok(hasher.finish())
    }

    /// Join an upload's parts (object stores without in-place appends) into
    /// one staging object; returns it with the digest of its bytes.
    async fn assemble_parts(
        &self,
        id: &UploadId,
        up: &UploadRow,
        digest: &Digest,
    ) -> Result<(object_store::path::Path, Digest)> {
        let parts = self.meta.upload_parts(id).await?;
        let keys: Vec<_> = parts
            .iter()
            .map(|p| layout::upload_part(id, &p.part_id))
            .collect();
        let cached = self
            .take_hasher(id, up.size)
            .filter(|h| h.algorithm() == digest.algorithm() && !parts.is_empty());
        let staging = match keys.as_slice() {
            [] => {
                let key = layout::upload_assembled(id);
                self.objects.put(&key, Bytes::new().into()).await?;
                key
            }
            [only] => only.clone(),
            _ => layout::upload_assembled(id),
        };
        let actual = match (cached, keys.len()) {
            (Some(h), n) if n <= 1 => h.finish(),
            (Some(h), _) => {
                objects::hash_objects(
                    &self.objects,
                    self.local_root.as_deref(),
                    &keys,
                    Algorithm::Sha256.hasher(),
                    Some(&staging),
                )
                .await?;
                h.finish()
            }
            (None, n) if n <= 1 => self.hash_staged(&staging, digest.algorithm()).await?,
            (None, _) => objects::hash_objects(
                &self.objects,
                self.local_root.as_deref(),
                &keys,
                digest.algorithm().hasher(),
                Some(&staging),
            )
            .await?
            .finish(),
        };
        Ok((staging, actual))
    }

    /// Cancel an upload and delete its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.upload(repo, id).await?;
        self.hashers.lock().expect("hasher map poisoned").remove(id);
        self.meta.delete_upload(id).await?;
        self.delete_upload_dir(id).await
    }

    pub(crate) async fn delete_upload_dir(&self, id: &UploadId) -> Result<()> {
        objects::delete_upload_dir(
            self.objects.as_ref(),
            self.local_root.as_deref(),
            &layout::upload_dir(id),
        )
        .await
    }

    // ---- manifests ----

    /// Validate and store a manifest, then point `reference` (if a tag) and `extra_tags` at it.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PutManifest> {
        if bytes.len() > manifest::MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: bytes.len(),
                limit: manifest::MAX_MANIFEST_SIZE,
            });
        }
        let parsed = manifest::parse(content_type, &bytes)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        self.check_refs(repo, &parsed.refs, !self.allow_sparse)
            .await?;
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        tags.dedup();
        let _gate = self.gc_gate.read().await;
        self.put_small_blob(&digest, bytes.clone()).await?;
        self.meta
            .put_manifest(
                repo,
                &digest,
                bytes.len() as u64,
                &parsed,
                &tags,
                !self.allow_sparse,
            )
            .await?;
        Ok(PutManifest {
            digest,
            subject: parsed.subject,
            tags,
        })
    }

    /// Store bytes held in memory under their digest, durable before this
    /// returns. On a local store they go through a staging file and the same
    /// fsync and rename as an uploaded blob, so a crash never leaves a partial
    /// file; elsewhere a single PUT is atomic and durable.
    async fn put_small_blob(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        let key = layout::blob(digest);
        let Some(root) = self.local_root.as_deref() else {
            self.objects.put(&key, bytes.into()).await?;
            return Ok(());
        };
        if self.objects.head(&key).await.is_ok() {
            return Ok(());
        }
        let staged = StagedFile::write(root.join(layout::staging_root().as_ref()), bytes).await?;
        let staging = layout::staging_file(staged.name());
        objects::commit(self.objects.as_ref(), Some(root), &staging, &key).await?;
        Ok(())
    }

    /// Check each reference against what `repo` holds: a size other than the
    /// stored content's is refused always; absent content unless `require`
    /// is off (sparse manifests). Only `repo` is looked at, never content
    /// another repository holds.
    async fn check_refs(
        &self,
        repo: &RepoName,
        refs: &[(Digest, RefKind, u64)],
        require: bool,
    ) -> Result<()> {
        for (digest, kind, declared) in refs {
            let stored = match kind {
                RefKind::Blob => self.meta.repo_blob_size(repo, digest).await?,
                RefKind::Manifest => self.meta.manifest(repo, digest).await?.map(|m| m.size),
                RefKind::ForeignBlob => continue,
            };
            match stored {
                Some(stored) if stored != *declared => {
                    return Err(Error::DescriptorSizeMismatch {
                        digest: digest.clone(),
                        declared: *declared,
                        stored,
                    })
                }
                None if require => {
                    return Err(Error::ManifestBlobUnknown {
                        digest: digest.clone(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Resolve a manifest by tag or digest; with `with_bytes`, also read its bytes.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_bytes: bool,
    ) -> Result<StoredManifest> {
        let row = match reference {
            Reference::Tag(t) => self.meta.tagged_manifest(repo, t).await?,
            Reference::Digest(d) => self.meta.manifest(repo, d).await?,
        }
        .ok_or_else(|| Error::ManifestUnknown {
            reference: reference.to_string(),
        })?;
        let bytes = if with_bytes {
            Some(self.manifest_bytes(&row.digest).await?)
        } else {
            None
        };
        Ok(StoredManifest {
            digest: row.digest,
            media_type: row.media_type,
            size: row.size,
            bytes,
        })
    }

    /// A manifest's bytes: immutable under their digest, so kept in memory
    /// once read and verified (up to `MANIFEST_CACHE_BYTES` in all). Whether
    /// the manifest is still visible is the caller's lookup, never the cache's.
    async fn manifest_bytes(&self, digest: &Digest) -> Result<Bytes> {
        let cached = self
            .manifests
            .lock()
            .expect("manifest cache poisoned")
            .0
            .get(digest)
            .cloned();
        if let Some(bytes) = cached {
            return Ok(bytes);
        }
        let bytes = objects::read_all(self.objects.as_ref(), &layout::blob(digest)).await?;
        if Digest::of(digest.algorithm(), &bytes) == *digest {
            let mut cache = self.manifests.lock().expect("manifest cache poisoned");
            let (map, held) = &mut *cache;
            if *held + bytes.len() > MANIFEST_CACHE_BYTES {
                map.clear();
                *held = 0;
            }
            if map.insert(digest.clone(), bytes.clone()).is_none() {
                *held += bytes.len();
            }
        }
        Ok(bytes)
    }

    /// Delete a tag, or a manifest (with every tag pointing at it) by digest.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let existed = match reference {
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
        };
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                reference: reference.to_string(),
            })
        }
    }

    /// Tags of a repository, sorted, after `last`, at most `limit`.
    pub async fn tags(&self, repo: &RepoName, last: Option<&str>, limit: u64) -> Result<TagPage> {
        let all = self.all_tags(repo).await?;
        let from = last.map_or(0, |last| all.partition_point(|t| t.as_str() <= last));
        let to = from.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX));
        let page = TagPage {
            range: from..to.min(all.len()),
            all,
        };
        if page.is_empty() && last.is_none() && !self.meta.repo_exists(repo).await? {
            return Err(Error::NameUnknown {
                name: repo.to_string(),
            });
        }
        Ok(page)
    }

    /// Every tag of `repo`, in byte order, from the cache when its version is
    /// still the database's. The version is read before the list, so a cached
    /// list is never older than the version it is filed under.
    async fn all_tags(&self, repo: &RepoName) -> Result<Arc<Vec<String>>> {
        let version = self.meta.tag_version(repo).await?;
        let cached = self
            .tag_lists
            .lock()
            .expect("tag cache poisoned")
            .get(repo.as_str())
            .cloned();
        if let Some((v, tags)) = cached {
            if v == version {
                return Ok(tags);
            }
        }
        let mut tags = self.meta.tags(repo, None, i64::MAX).await?;
        tags.sort_unstable();
        let tags = Arc::new(tags);
        if tags.len() > TAG_CACHE_MAX_TAGS {
            return Ok(tags);
        }
        let mut cache = self.tag_lists.lock().expect("tag cache poisoned");
        if cache.len() >= TAG_CACHE_REPOS {
            cache.clear();
        }
        cache.insert(repo.to_string(), (version, Arc::clone(&tags)));
        Ok(tags)
    }

    /// Repository names, sorted, after `last`, at most `limit`.
    pub async fn repositories(&self, last: Option<&str>, limit: u64) -> Result<Vec<String>> {
        self.meta.repositories(last, clamp(limit)).await
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let rows = self.meta.referrers(repo, subject, artifact_type).await?;
        rows.into_iter()
            .map(|r| {
                let annotations = match r.annotations {
                    Some(text) => {
                        Some(serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                            detail: format!("annotations of {}: {e}", r.digest),
                        })?)
                    }
                    None => None,
                };
                Ok(Descriptor {
                    media_type: r.media_type,
                    digest: r.digest,
                    size: r.size,
                    artifact_type: r.artifact_type,
                    annotations,
                    platform: None,
                })
            })
            .collect()
    }
}

fn clamp(limit: u64) -> i64 {
    limit.min(i64::MAX as u64) as i64
}
