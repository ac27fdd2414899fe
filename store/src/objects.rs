//! Byte movement through the `object_store` backend: [`Objects`] owns the
//! backend and, for a `file://` store, its directory (where durability needs
//! our own fsync and reads take a faster path). It opens from a URL, streams a
//! body into an object, reads a range, and commits staging objects as blobs.
//!
//! Keys come from [`crate::layout`]; this module never invents one.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore, PutPayload, WriteMultipart};

use crate::{Error, Hasher, Result};

/// Bodies are written in parts of this size; at most `PARTS_IN_FLIGHT` are buffered.
const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

/// How S3 requests are retried: a few times, with object_store's jittered
/// exponential backoff (100 ms doubling up to 1 s, each wait drawn at random
/// below its bound), and none started 10 s after the first try. So a dead
/// server fails a request within seconds (503 to the client) instead of
/// holding it for object_store's default of 10 retries over 3 minutes. The
/// connect (5 s) and request (30 s) timeouts stay object_store's defaults,
/// which `AWS_CONNECT_TIMEOUT` and `AWS_TIMEOUT` override.
fn s3_retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    }
}

/// A stream of bytes read from the backend.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// The object store, with the directory behind it when it is local.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Set for a local file store, whose writes we fsync ourselves.
    local_root: Option<PathBuf>,
}

impl Objects {
    /// Open a storage backend from `file:///path` or `s3://bucket[/prefix]`.
    ///
    /// S3 settings (endpoint, region, credentials, `AWS_ALLOW_HTTP`) come from the
    /// standard `AWS_*` environment variables.
    pub fn open(url: &str) -> Result<Objects> {
        if let Some(path) = url.strip_prefix("file://") {
            std::fs::create_dir_all(path).map_err(|e| Error::Config {
                detail: format!("cannot create storage directory {path}: {e}"),
            })?;
            let fs = LocalFileSystem::new_with_prefix(path)?.with_automatic_cleanup(true);
            return Ok(Objects {
                store: Arc::new(fs),
                local_root: Some(PathBuf::from(path)),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(s3_retry())
                .build()?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Objects {
                store,
                local_root: None,
            });
        }
        Err(Error::Config {
            detail: format!(
                "unsupported storage URL {url:?}: use file:///path or s3://bucket/prefix"
            ),
        })
    }

    /// The directory behind a local store.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// An object's metadata.
    pub async fn head(&self, key: &Path) -> Result<ObjectMeta, object_store::Error> {
        self.store.head(key).await
    }

    /// Write a whole object in one PUT.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.store.put(key, bytes.into()).await?;
        Ok(())
    }

    /// Delete an object (an error if it is absent).
    pub async fn delete(&self, key: &Path) -> Result<()> {
        self.store.delete(key).await?;
        Ok(())
    }

    /// Delete an object if it is there.
    pub async fn delete_if_present(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from(e)),
        }
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        Ok(self.store.list(Some(prefix)).try_collect().await?)
    }

    /// Move an object, replacing any at `to`.
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.store.rename(from, to).await?;
        Ok(())
    }

    /// Stream `body` into the object `key`, feeding `hasher` on the way.
    ///
    /// Fails with `SizeMismatch` if `expected_len` is given and not met, and with
    /// `BodyIncomplete` if the body stream fails; the object is not left behind.
    /// Small bodies go in a single PUT; larger ones use a multipart upload with
    /// bounded buffering, so memory stays flat whatever the size.
    pub async fn write_stream<S>(
        &self,
        key: &Path,
        body: S,
        mut hasher: Option<&mut Hasher>,
        expected_len: Option<u64>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let store = self.store.as_ref();
        let mut body = std::pin::pin!(body);
        let mut head: Vec<Bytes> = Vec::new();
        let mut written: u64 = 0;
        let mut writer: Option<WriteMultipart> = None;
        let check_len = |n: u64| match expected_len {
            Some(max) if n > max => Err(Error::SizeMismatch {
                expected: max,
                actual: n,
            }),
            _ => Ok(()),
        };
        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Error::from_io)?;
                written += chunk.len() as u64;
                check_len(written)?;
                if let Some(h) = hasher.as_deref_mut() {
                    h.update(&chunk);
                }
                match writer.as_mut() {
                    Some(w) => {
                        w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                        w.write(&chunk);
                    }
                    None => {
                        head.push(chunk);
                        if written as usize >= PART_SIZE {
                            let upload = store.put_multipart(key).await?;
                            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                            for c in head.drain(..) {
                                w.write(&c);
                            }
                            writer = Some(w);
                        }
                    }
                }
            }
            if let Some(expected) = expected_len {
                if written != expected {
                    return Err(Error::SizeMismatch {
                        expected,
                        actual: written,
                    });
                }
            }
            Ok(())
        }
        .await;
        match (outcome, writer) {
            (Ok(()), Some(w)) => {
                w.finish().await?;
            }
            (Ok(()), None) => {
                store.put(key, PutPayload::from_iter(head)).await?;
            }
            (Err(e), Some(w)) => {
                let _ = w.abort().await;
                return Err(e);
            }
            (Err(e), None) => return Err(e),
        }
        Ok(written)
    }

    /// Read an object, or a byte range of it, as a stream; on a local store
    /// straight from the file in 1 MiB reads, which the backend's generic
    /// path does in 8 KiB pieces.
    pub async fn read(&self, key: &Path, range: Option<Range<u64>>) -> Result<ByteStream> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Some(root) = self.local_root() else {
            let options = GetOptions {
                range: range.map(GetRange::Bounded),
                ..Default::default()
            };
            let result = self.store.get_opts(key, options).await?;
            return Ok(result.into_stream().map_err(std::io::Error::other).boxed());
        };
        let path = root.join(key.as_ref());
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::from(object_store::Error::NotFound {
                    path: key.to_string(),
                    source: Box::new(e),
                }))
            }
            Err(e) => return Err(Error::from_io(e)),
        };
        let len = match &range {
            Some(r) => {
                file.seek(std::io::SeekFrom::Start(r.start))
                    .await
                    .map_err(Error::from_io)?;
                r.end - r.start
            }
            None => file.metadata().await.map_err(Error::from_io)?.len(),
        };
        Ok(tokio_util::io::ReaderStream::with_capacity(file.take(len), 1 << 20).boxed())
    }

    /// Read a whole (small) object into memory.
    pub async fn read_all(&self, key: &Path) -> Result<Bytes> {
        Ok(self.store.get(key).await?.bytes().await?)
    }

    /// Hash the concatenation of `keys`, optionally writing it to `out` on the way.
    pub async fn hash(
        &self,
        keys: &[Path],
        mut hasher: Hasher,
        out: Option<&Path>,
    ) -> Result<Hasher> {
        let owned = self.clone();
        let joined = futures::stream::iter(keys.to_vec())
            .then(move |k| {
                let objects = owned.clone();
                async move { objects.read(&k, None).await.map_err(std::io::Error::other) }
            })
            .try_flatten()
            .boxed()
            .inspect_ok(|chunk| hasher.update(chunk));
        match out {
            Some(out) => {
                self.write_stream(out, joined, None, None).await?;
            }
            None => {
                joined
                    .try_for_each(|_| futures::future::ready(Ok(())))
                    .await
                    .map_err(Error::from_io)?;
            }
        }
        Ok(hasher)
    }

    /// Flush an object (and, with `dir`, its directory entry) to stable storage
    /// on a local backend. Remote stores are durable when the write returns.
    async fn sync_local(&self, key: &Path, dir: bool) -> Result<()> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        let file = root.join(key.as_ref());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if dir {
                if let Some(parent) = file.parent() {
                    std::fs::File::open(parent)?.sync_all()?;
                }
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| {
            Error::from(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })
        })
    }

    /// Move a verified staging object to its content-addressed key, only if absent
    /// (then the staging object is left for the caller's cleanup).
    ///
    /// The staging bytes are flushed before the move, so a blob visible under its
    /// digest is always complete, even after a power loss.
    pub async fn commit(&self, staging: &Path, blob: &Path) -> Result<Commit> {
        let store = self.store.as_ref();
        if store.head(blob).await.is_ok() {
            // The staging copy stays until the caller's cleanup: should a GC sweep
            // take the stored copy before the metadata commits, it is re-committed.
            return Ok(Commit::AlreadyStored);
        }
        self.sync_local(staging, false).await?;
        let outcome = store.rename_if_not_exists(staging, blob).await;
        if outcome.is_ok() {
            self.sync_local(blob, true).await?;
        }
        match outcome {
            Ok(()) => Ok(Commit::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Commit::AlreadyStored),
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
                // The content is addressed by its digest, so an overwrite by a racing
                // commit writes the very same bytes.
                store.rename(staging, blob).await?;
                self.sync_local(blob, true).await?;
                Ok(Commit::Created)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Delete an upload's staging area. On a local store the directory is removed
    /// whole: the backend's half-written multipart files do not show in listings.
    pub async fn delete_upload_dir(&self, dir: &Path) -> Result<()> {
        if let Some(root) = self.local_root() {
            return match tokio::fs::remove_dir_all(root.join(dir.as_ref())).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::from(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                })),
            };
        }
        self.delete_prefix(dir).await
    }

    /// Delete every object under `prefix`.
    async fn delete_prefix(&self, prefix: &Path) -> Result<()> {
        for meta in self.list(prefix).await? {
            self.delete_if_present(&meta.location).await?;
        }
        Ok(())
    }
}

/// Outcome of committing a staging object as a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The blob was written now.
    Created,
    /// Identical content was already stored: a deduplication hit.
    AlreadyStored,
}

/// Names of the entries directly under `dir` on a local store (empty if absent).
pub async fn local_dir_entries(local_root: &FsPath, dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rd = match tokio::fs::read_dir(local_root.join(dir.as_ref())).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::from_io(e)),
    };
    while let Some(entry) = rd.next_entry().await.map_err(Error::from_io)? {
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}
