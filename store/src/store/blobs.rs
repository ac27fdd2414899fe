//! Blobs: read, mount, delete, whole-blob pushes, and the verified commit
//! every writer (upload finish, local file, manifest push) ends with.

use std::ops::Range;

use bytes::Bytes;
use futures::Stream;

use super::Store;
use crate::local::{Pace, StagedFile};
use crate::objects::ByteStream;
use crate::{layout, Digest, Error, NewEvent, RepoName, Result, UploadId};

impl Store {
    /// Whether the blob is stored, whatever repository holds it.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.meta.blob_size(digest).await?.is_some())
    }

    /// Whether `repo` exists: holds a manifest, a tag or a blob.
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        self.meta.repo_exists(repo).await
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
        self.objects.read(&layout::blob(digest), range).await
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
        self.mount_blob_with(repo, digest, from, &[]).await
    }

    /// [`Store::mount_blob`], putting `events` in the outbox with the link.
    pub async fn mount_blob_with(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
        events: &[NewEvent],
    ) -> Result<bool> {
        let _gate = self.gc_gate.read().await;
        Ok(self
            .meta
            .mount_blob(repo, digest, from, events, &self.quotas_for(repo))
            .await?
            .is_some())
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

    /// Store `bytes` (a config, a small file) as blob `digest` of `repo`,
    /// verifying them: one durable write and one metadata commit, without
    /// the upload session [`Store::put_blob`] keeps for a stream.
    pub async fn put_blob_bytes(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let size = bytes.len() as u64;
        let quotas = self.quotas_for(repo);
        if !quotas.is_empty() {
            self.precheck(&quotas, digest, size).await?;
        }
        let _gate = self.gc_gate.read().await;
        self.put_small_blob(digest, bytes.clone()).await?;
        self.meta
            .commit_blob(repo, (digest, size), None, &quotas)
            .await?;
        // As in `commit_verified`: a GC in another process may have swept
        // the stored copy just before the metadata committed.
        if matches!(
            self.objects.head(&layout::blob(digest)).await,
            Err(object_store::Error::NotFound { .. })
        ) {
            self.put_small_blob(digest, bytes).await?;
        }
        Ok(())
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
        self.put_blob_early(repo, digest, len, body, None).await
    }

    /// [`Store::put_blob`], telling `verified` whether the bytes hash to
    /// `digest` as soon as the store knows: once the last byte is written,
    /// before the durable commit (fsync, rename, metadata) that makes the
    /// blob visible. A caller streaming the same bytes to a client may end
    /// the client's transfer then. The blob is visible only once this
    /// returns `Ok`. `verified` is dropped unsent when the digest is known
    /// only at the commit (the hasher was not kept): wait for the result then.
    pub async fn put_blob_early<S>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        len: Option<u64>,
        body: S,
        verified: Option<tokio::sync::oneshot::Sender<bool>>,
    ) -> Result<()>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let id = self.start_upload(repo).await?;
        // A caller told early serves its client before the commit: on a
        // local store the hash runs ahead of the writes, and tells the
        // digest as soon as the last byte is hashed (see `local`).
        let (hashed_tx, hashed) = tokio::sync::oneshot::channel();
        let pace = match verified {
            Some(_) => Pace::HashAhead {
                hashed: Some(hashed_tx),
            },
            None => Pace::InStep,
        };
        let tell = |verified: tokio::sync::oneshot::Sender<bool>, h: &crate::Hasher| {
            if h.algorithm() == digest.algorithm() {
                let _ = verified.send(h.clone().finish() == *digest);
            }
        };
        // `verified` comes back unsent when the append did not hash ahead.
        let early = async {
            let verified = verified?;
            match hashed.await {
                Ok(h) => {
                    tell(verified, &h);
                    None
                }
                Err(_) => Some(verified),
            }
        };
        let append = self.append_upload_with(repo, &id, Some(0), len, body, pace);
        let (appended, verified) = tokio::join!(append, early);
        let result = match appended {
            Ok(size) => {
                if let Some(verified) = verified {
                    if let Some(h) = self.hashers.take(&id, size) {
                        tell(verified, &h);
                        self.hashers.put(&id, size, Some(h));
                    }
                }
                self.finish_upload(repo, &id, digest).await
            }
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
        self.store_file(repo, digest, path, true).await
    }

    /// [`Store::put_blob_file`] for a file whose digest the caller computed
    /// over exactly the bytes it wrote into it, in this process (a download
    /// it verified, a layer it made). On a local store the file is moved in
    /// without being read and hashed a second time; elsewhere its upload is
    /// verified as always. The caller vouches for the digest: never use it
    /// for a file another process could have written.
    pub async fn put_hashed_file(
        &self,
        repo: &RepoName,
        digest: &Digest,
        path: &std::path::Path,
    ) -> Result<()> {
        self.store_file(repo, digest, path, false).await
    }

    async fn store_file(
        &self,
        repo: &RepoName,
        digest: &Digest,
        path: &std::path::Path,
        verify: bool,
    ) -> Result<()> {
        if let Some(root) = self.objects.local_root() {
            let dir = root.join(layout::staging_root().as_ref());
            if let Some(staged) = StagedFile::adopt(dir, path.to_path_buf()).await? {
                let size = if verify {
                    let (actual, size) = staged.digest(digest.algorithm()).await?;
                    if &actual != digest {
                        return Err(Error::DigestMismatch {
                            expected: digest.clone(),
                            actual,
                        });
                    }
                    size
                } else {
                    staged.size()?
                };
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

    /// Make verified staging bytes the blob `digest` of `repo`: bytes first,
    /// then the metadata (which also ends the upload session `upload`).
    pub(super) async fn commit_verified(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        staging: &object_store::path::Path,
        upload: Option<&UploadId>,
    ) -> Result<()> {
        let quotas = self.quotas_for(repo);
        if !quotas.is_empty() {
            // Refuse before the bytes move: the check inside the commit's
            // transaction stays the one that counts, against races.
            self.precheck(&quotas, digest, size).await?;
        }
        let _gate = self.gc_gate.read().await;
        let blob = layout::blob(digest);
        self.objects.commit(staging, &blob).await?;
        self.meta
            .commit_blob(repo, (digest, size), upload, &quotas)
            .await?;
        // A GC in another process may have swept the stored copy we deduplicated
        // onto just before our metadata committed: then commit ours after all.
        if matches!(
            self.objects.head(&blob).await,
            Err(object_store::Error::NotFound { .. })
        ) {
            self.objects.commit(staging, &blob).await?;
        }
        Ok(())
    }

    /// Store bytes held in memory under their digest, durable before this
    /// returns. On a local store they go through a staging file and the same
    /// fsync and rename as an uploaded blob, so a crash never leaves a partial
    /// file; elsewhere a single PUT is atomic and durable.
    pub(super) async fn put_small_blob(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        let key = layout::blob(digest);
        let Some(root) = self.objects.local_root() else {
            return self.objects.put(&key, bytes).await;
        };
        if self.objects.head(&key).await.is_ok() {
            return Ok(());
        }
        let staged = StagedFile::write(root.join(layout::staging_root().as_ref()), bytes).await?;
        let staging = layout::staging_file(staged.name());
        self.objects.commit(&staging, &key).await?;
        Ok(())
    }
}
