//! Upload sessions. How a session holds its bytes is chosen once, when the
//! store opens ([`Uploads`]): on local disk one data file appended in place
//! under a lock, so a finish is an fsync and a rename; on any other object
//! store one part object per chunk, joined (and hashed) at the finish.
//! Everything else (the session row, the offset check, the running digest,
//! the verified commit) is shared.

use std::path::{Path as FsPath, PathBuf};

use bytes::Bytes;
use futures::Stream;

use super::Store;
use crate::local::{LockedData, Pace};
use crate::meta::UploadRow;
use crate::objects::Objects;
use crate::{layout, Algorithm, Digest, Error, RepoName, Result, UploadId};

/// The part id recorded for appends to a local upload's single data file.
const DATA_PART: &str = "data";

/// Where upload sessions keep their bytes.
pub(super) enum Uploads {
    /// A local file store: one data file per session, under `root`.
    LocalFile {
        /// The storage directory.
        root: PathBuf,
    },
    /// Any other object store (S3): one part object per appended chunk.
    Parts,
}

impl Uploads {
    /// The backend for `objects`: local files when it is a directory.
    pub(super) fn for_objects(objects: &Objects) -> Uploads {
        match objects.local_root() {
            Some(root) => Uploads::LocalFile {
                root: root.to_path_buf(),
            },
            None => Uploads::Parts,
        }
    }
}

/// Path of an upload's data file in a local store.
fn data_file(root: &FsPath, id: &UploadId) -> PathBuf {
    root.join(layout::upload_data(id).as_ref())
}

/// Refuse a chunk that does not start where the upload stands.
fn check_start(start: Option<u64>, up: &UploadRow) -> Result<()> {
    match start {
        Some(start) if start != up.size => Err(Error::UploadOutOfOrder {
            start,
            offset: up.size,
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Open an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadId> {
        let id = UploadId::new();
        // The session row comes first: GC purges staging files whose session
        // it does not know, and a file created before its row could go.
        self.meta.create_upload(&id, repo).await?;
        if let Uploads::LocalFile { root } = &self.uploads {
            if let Err(e) = LockedData::create(data_file(root, &id)).await {
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
        self.append_upload_with(repo, id, start, len, body, Pace::InStep)
            .await
    }

    /// [`Store::append_upload`], choosing the [`Pace`] of a local data
    /// file's hash and writes.
    pub(crate) async fn append_upload_with<S>(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
        pace: Pace,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        match &self.uploads {
            Uploads::LocalFile { root } => {
                let data = self.lock_data(root, repo, id).await?.with_pace(pace);
                self.append_local(data, repo, id, start, len, body).await
            }
            Uploads::Parts => self.append_part(repo, id, start, len, body).await,
        }
    }

    /// Append to the session's data file (`data`, locked by the caller
    /// before the offset is read and held until the new offset is recorded).
    async fn append_local<S>(
        &self,
        data: LockedData,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        len: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let up = self.upload(repo, id).await?;
        check_start(start, &up)?;
        let hasher = self.hashers.take(id, up.size);
        let (data, written, hasher) = data.append(up.size, body, hasher, len).await?;
        let recorded = match written {
            0 => Ok(true),
            _ => self.meta.append_part(id, &up, DATA_PART, written).await,
        };
        if let Err(e) = recorded {
            // The chunk is not acknowledged: give its bytes back at once (a full
            // disk needs them), unless the database did record it after all.
            if matches!(self.upload(repo, id).await, Ok(now) if now.size == up.size) {
                let _ = data.truncate(up.size).await;
            }
            return Err(e);
        }
        if !recorded? {
            return Err(Error::UploadOutOfOrder {
                start: up.size,
                offset: self.upload(repo, id).await?.size,
            });
        }
        self.hashers.put(id, up.size + written, hasher);
        Ok(up.size + written)
    }

    /// Store the chunk as a new part object, recorded only if the session is
    /// still where it was read (else the part is deleted).
    async fn append_part<S>(
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
        let up = self.upload(repo, id).await?;
        check_start(start, &up)?;
        let mut hasher = self.hashers.take(id, up.size);
        let part_id = UploadId::new().to_string();
        let key = layout::upload_part(id, &part_id);
        let written = self
            .objects
            .write_stream(&key, body, hasher.as_mut(), len)
            .await?;
        if written == 0 {
            self.objects.delete(&key).await?;
            self.hashers.put(id, up.size, hasher);
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
        self.hashers.put(id, up.size + written, hasher);
        Ok(up.size + written)
    }

    /// Lock the session's data file; `UploadBusy` while another request
    /// writes to the upload.
    async fn lock_data(&self, root: &FsPath, repo: &RepoName, id: &UploadId) -> Result<LockedData> {
        match LockedData::try_lock(data_file(root, id), id).await? {
            Some(data) => Ok(data),
            None => Err(Error::UploadBusy {
                offset: self.upload(repo, id).await?.size,
            }),
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
        match &self.uploads {
            Uploads::LocalFile { root } => self.finish_local(root, repo, id, digest).await,
            Uploads::Parts => {
                let up = self.upload(repo, id).await?;
                let (staging, actual) = self.assemble_parts(id, &up, digest).await?;
                self.commit_upload(repo, id, &up, digest, &staging, actual)
                    .await
            }
        }
    }

    /// Finish a local upload. The data file stays locked until the blob is
    /// committed, so no append can write into it once it is verified.
    async fn finish_local(
        &self,
        root: &FsPath,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<()> {
        let data = match self.lock_data(root, repo, id).await {
            Err(Error::UploadUnknown { .. }) => return self.finish_renamed(repo, id, digest).await,
            locked => locked?,
        };
        let up = self.upload(repo, id).await?;
        let _data = data.truncate(up.size).await?;
        let staging = layout::upload_data(id);
        let cached = self
            .hashers
            .take(id, up.size)
            .filter(|h| h.algorithm() == digest.algorithm());
        let actual = match cached {
            Some(h) => h.finish(),
            None => self.hash_staged(&staging, digest.algorithm()).await?,
        };
        self.commit_upload(repo, id, &up, digest, &staging, actual)
            .await
    }

    /// Commit the staged bytes of a session if they hash to `digest`; cancel
    /// the session if not.
    async fn commit_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        up: &UploadRow,
        digest: &Digest,
        staging: &object_store::path::Path,
        actual: Digest,
    ) -> Result<()> {
        if &actual != digest {
            self.cancel_upload(repo, id).await?;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let committed = self
            .commit_verified(repo, digest, up.size, staging, Some(id))
            .await;
        if let Err(e @ Error::QuotaExceeded { .. }) = committed {
            // A refused blob leaves nothing behind: neither the session nor its bytes.
            self.cancel_upload(repo, id).await?;
            return Err(e);
        }
        committed?;
        self.delete_upload_dir(id).await?;
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
                    .commit_blob(repo, (digest, up.size), Some(id), &self.quotas_for(repo))
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
        let hasher = self
            .objects
            .hash(std::slice::from_ref(staging), algorithm.hasher(), None)
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
            .hashers
            .take(id, up.size)
            .filter(|h| h.algorithm() == digest.algorithm() && !parts.is_empty());
        let staging = match keys.as_slice() {
            [] => {
                let key = layout::upload_assembled(id);
                self.objects.put(&key, Bytes::new()).await?;
                key
            }
            [only] => only.clone(),
            _ => layout::upload_assembled(id),
        };
        let actual = match (cached, keys.len()) {
            (Some(h), n) if n <= 1 => h.finish(),
            (Some(h), _) => {
                self.objects
                    .hash(&keys, Algorithm::Sha256.hasher(), Some(&staging))
                    .await?;
                h.finish()
            }
            (None, n) if n <= 1 => self.hash_staged(&staging, digest.algorithm()).await?,
            (None, _) => self
                .objects
                .hash(&keys, digest.algorithm().hasher(), Some(&staging))
                .await?
                .finish(),
        };
        Ok((staging, actual))
    }

    /// Cancel an upload and delete its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.upload(repo, id).await?;
        self.hashers.forget(id);
        self.meta.delete_upload(id).await?;
        self.delete_upload_dir(id).await
    }

    /// Delete an upload's staging area.
    pub(crate) async fn delete_upload_dir(&self, id: &UploadId) -> Result<()> {
        self.objects
            .delete_upload_dir(&layout::upload_dir(id))
            .await
    }
}
