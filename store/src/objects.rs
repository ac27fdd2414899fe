//! Byte movement through the `object_store` backend: open it from a URL, stream
//! a body into an object, read a range, and commit staging objects as blobs.
//!
//! Keys come from [`crate::layout`]; this module never invents one.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};

use crate::{Error, Hasher, Result};

/// Bodies are written in parts of this size; at most `PARTS_IN_FLIGHT` are buffered.
const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

/// A stream of bytes read from the backend.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Open a storage backend from `file:///path` or `s3://bucket[/prefix]`.
///
/// S3 settings (endpoint, region, credentials, `AWS_ALLOW_HTTP`) come from the
/// standard `AWS_*` environment variables.
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>> {
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path).map_err(|e| Error::Config {
            detail: format!("cannot create storage directory {path}: {e}"),
        })?;
        let fs = LocalFileSystem::new_with_prefix(path)?.with_automatic_cleanup(true);
        return Ok(Arc::new(fs));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(PrefixStore::new(s3, prefix)));
    }
    Err(Error::Config {
        detail: format!("unsupported storage URL {url:?}: use file:///path or s3://bucket/prefix"),
    })
}

/// Stream `body` into the object `key`, feeding `hasher` on the way.
///
/// Fails with `SizeMismatch` if `expected_len` is given and not met, and with
/// `BodyIncomplete` if the body stream fails; the object is not left behind.
/// Small bodies go in a single PUT; larger ones use a multipart upload with
/// bounded buffering, so memory stays flat whatever the size.
pub async fn write_stream<S>(
    store: &dyn ObjectStore,
    key: &Path,
    body: S,
    mut hasher: Option<&mut Hasher>,
    expected_len: Option<u64>,
) -> Result<u64>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send,
{
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

/// Read an object, or a byte range of it, as a stream.
pub async fn read(
    store: &dyn ObjectStore,
    key: &Path,
    range: Option<Range<u64>>,
) -> Result<ByteStream> {
    let options = GetOptions {
        range: range.map(GetRange::Bounded),
        ..Default::default()
    };
    let result = store.get_opts(key, options).await?;
    Ok(result.into_stream().map_err(std::io::Error::other).boxed())
}

/// Read an object like [`read`]; on a local store straight from the file in
/// 1 MiB reads, which the backend's generic path does in 8 KiB pieces.
pub async fn read_fast(
    store: &dyn ObjectStore,
    local_root: Option<&std::path::Path>,
    key: &Path,
    range: Option<Range<u64>>,
) -> Result<ByteStream> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Some(root) = local_root else {
        return read(store, key, range).await;
    };
    let path = root.join(key.as_ref());
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Storage(object_store::Error::NotFound {
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
pub async fn read_all(store: &dyn ObjectStore, key: &Path) -> Result<Bytes> {
    Ok(store.get(key).await?.bytes().await?)
}

/// Hash the concatenation of `keys`, optionally writing it to `out` on the way.
pub async fn hash_objects(
    store: &Arc<dyn ObjectStore>,
    local_root: Option<&std::path::Path>,
    keys: &[Path],
    mut hasher: Hasher,
    out: Option<&Path>,
) -> Result<Hasher> {
    let owned = Arc::clone(store);
    let root = local_root.map(std::path::Path::to_path_buf);
    let joined = futures::stream::iter(keys.to_vec())
        .then(move |k| {
            let store = Arc::clone(&owned);
            let root = root.clone();
            async move {
                read_fast(store.as_ref(), root.as_deref(), &k, None)
                    .await
                    .map_err(std::io::Error::other)
            }
        })
        .try_flatten()
        .boxed()
        .inspect_ok(|chunk| hasher.update(chunk));
    match out {
        Some(out) => {
            write_stream(store.as_ref(), out, joined, None, None).await?;
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

/// Outcome of committing a staging object as a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The blob was written now.
    Created,
    /// Identical content was already stored: a deduplication hit.
    AlreadyStored,
}

/// The directory behind a `file://` storage URL, where durability needs our own fsync.
pub fn local_root(url: &str) -> Option<std::path::PathBuf> {
    url.strip_prefix("file://").map(std::path::PathBuf::from)
}

/// Flush an object (and, with `dir`, its directory entry) to stable storage
/// on a local backend. Remote stores are durable when the write returns.
async fn sync_local(root: Option<&std::path::Path>, key: &Path, dir: bool) -> Result<()> {
    let Some(root) = root else { return Ok(()) };
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
        Error::Storage(object_store::Error::Generic {
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
pub async fn commit(
    store: &dyn ObjectStore,
    local_root: Option<&std::path::Path>,
    staging: &Path,
    blob: &Path,
) -> Result<Commit> {
    if store.head(blob).await.is_ok() {
        // The staging copy stays until the caller's cleanup: should a GC sweep
        // take the stored copy before the metadata commits, it is re-committed.
        return Ok(Commit::AlreadyStored);
    }
    sync_local(local_root, staging, false).await?;
    let outcome = store.rename_if_not_exists(staging, blob).await;
    if outcome.is_ok() {
        sync_local(local_root, blob, true).await?;
    }
    match outcome {
        Ok(()) => Ok(Commit::Created),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Commit::AlreadyStored),
        Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
            // The content is addressed by its digest, so an overwrite by a racing
            // commit writes the very same bytes.
            store.rename(staging, blob).await?;
            sync_local(local_root, blob, true).await?;
            Ok(Commit::Created)
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete an upload's staging area. On a local store the directory is removed
/// whole: the backend's half-written multipart files do not show in listings.
pub async fn delete_upload_dir(
    store: &dyn ObjectStore,
    local_root: Option<&std::path::Path>,
    dir: &Path,
) -> Result<()> {
    if let Some(root) = local_root {
        return match tokio::fs::remove_dir_all(root.join(dir.as_ref())).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Storage(object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })),
        };
    }
    delete_prefix(store, dir).await
}

/// Names of the entries directly under `dir` on a local store (empty if absent).
pub async fn local_dir_entries(local_root: &std::path::Path, dir: &Path) -> Result<Vec<String>> {
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

/// Delete every object under `prefix`.
pub async fn delete_prefix(store: &dyn ObjectStore, prefix: &Path) -> Result<()> {
    let keys: Vec<Path> = store
        .list(Some(prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await?;
    for key in keys {
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
