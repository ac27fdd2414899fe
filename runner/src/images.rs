//! The local image store: verified blobs by digest and one record per image
//! reference. This is the runner's only door to stored content; it is backed
//! by a content-addressed directory under the state root (see [`crate::paths`]).
//!
//! Writes are idempotent and race-free: a blob is verified before it is
//! renamed into place, and "already there" is a dedup hit.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{self, Digest, HashingReader};
use crate::oci::{Descriptor, Platform};
use crate::paths::Root;

/// Errors from the local image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The blob is not in the store.
    #[error("blob {digest} is not in the local store")]
    BlobNotFound {
        /// The missing digest.
        digest: Digest,
    },
    /// Content did not hash to the digest it was stored under.
    #[error("content of {expected} hashed to {actual}")]
    DigestMismatch {
        /// Expected digest.
        expected: Digest,
        /// Digest of the bytes seen.
        actual: Digest,
    },
    /// The image is not in the store.
    #[error("image {reference} is not in the local store")]
    ImageNotFound {
        /// The reference asked for.
        reference: String,
    },
    /// An image record is unreadable.
    #[error("corrupt image record {path}: {source}")]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A digest could not be parsed.
    #[error(transparent)]
    Digest(#[from] digest::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What the store knows about one local image reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The full reference it was pulled as.
    pub reference: String,
    /// Digest of the platform manifest.
    pub manifest: Digest,
    /// Digest of the image config.
    pub config: Digest,
    /// Layer descriptors (compressed blobs), base first.
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests, base first.
    pub diff_ids: Vec<Digest>,
    /// Platform the manifest was resolved for.
    pub platform: Platform,
    /// Unix time of the pull.
    pub pulled_at: u64,
}

/// The local image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: Root,
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, then
/// rename), flushed to disk first.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replace(path, bytes, true)
}

/// Like [`write_atomic`]; `durable: false` skips the fsync, for state that
/// means nothing after a reboot (a running container's record).
pub fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Root) -> Result<ImageStore> {
        for dir in [root.blobs_dir(), root.images_dir(), root.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(ImageStore { root: root.clone() })
    }

    /// Whether the blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.root.blob(digest).is_file()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.root.blob(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound {
                digest: digest.clone(),
            },
            _ => Error::Io {
                action: "open",
                path,
                source: e,
            },
        })
    }

    /// Reads a small stored blob (manifest, config) whole, re-verifying it.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.root.blob(digest);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound {
                digest: digest.clone(),
            },
            _ => Error::Io {
                action: "read",
                path: path.clone(),
                source: e,
            },
        })?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores bytes under their digest after checking it.
    pub fn put_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(digest.algorithm(), bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if self.has_blob(digest) {
            return Ok(());
        }
        let path = self.root.blob(digest);
        write_atomic(&path, bytes).map_err(io_err("write", &path))
    }

    /// Moves a downloaded file into the store after verifying its digest.
    /// The file must live under the root's tmp dir (same filesystem).
    pub fn put_blob_file(&self, digest: &Digest, file: &Path) -> Result<()> {
        let f = File::open(file).map_err(io_err("open", file))?;
        let (actual, _) = HashingReader::new(io::BufReader::new(f), digest.algorithm())
            .finish()
            .map_err(io_err("read", file))?;
        if &actual != digest {
            fs::remove_file(file).map_err(io_err("remove", file))?;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let path = self.root.blob(digest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        fs::rename(file, &path).map_err(io_err("store", &path))
    }

    /// Saves (or replaces) an image record.
    pub fn put_image(&self, record: &ImageRecord) -> Result<()> {
        let path = self.root.image_record(&record.reference);
        let bytes = serde_json::to_vec_pretty(record).expect("image records serialize");
        write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }

    /// Looks up an image record by its full reference.
    pub fn get_image(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let path = self.root.image_record(reference);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::CorruptRecord { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                action: "read",
                path,
                source: e,
            }),
        }
    }

    /// Every local image, sorted by reference.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.root.images_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let path = entry.map_err(io_err("list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = fs::read(&path).map_err(io_err("read", &path))?;
                let record = serde_json::from_slice(&bytes)
                    .map_err(|source| Error::CorruptRecord { path, source })?;
                out.push(record);
            }
        }
        out.sort_by(|a: &ImageRecord, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes an image record and the blobs no other image uses.
    pub fn remove_image(&self, reference: &str) -> Result<ImageRecord> {
        let record = self
            .get_image(reference)?
            .ok_or_else(|| Error::ImageNotFound {
                reference: reference.to_owned(),
            })?;
        let path = self.root.image_record(reference);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        self.remove_unused_blobs()?;
        Ok(record)
    }

    /// Deletes every blob no image record references. Returns how many went.
    pub fn remove_unused_blobs(&self) -> Result<usize> {
        let mut used = BTreeSet::new();
        for r in self.list_images()? {
            used.insert(r.manifest.clone());
            used.insert(r.config.clone());
            used.extend(r.layers.iter().map(|l| l.digest.clone()));
        }
        let mut removed = 0;
        let blobs = self.root.blobs_dir();
        for alg in fs::read_dir(&blobs).map_err(io_err("list", &blobs))? {
            let alg = alg.map_err(io_err("list", &blobs))?;
            let alg_path = alg.path();
            for blob in fs::read_dir(&alg_path).map_err(io_err("list", &alg_path))? {
                let blob = blob.map_err(io_err("list", &alg_path))?;
                let text = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    blob.file_name().to_string_lossy()
                );
                let keep = text.parse::<Digest>().is_ok_and(|d| used.contains(&d));
                if !keep {
                    let p = blob.path();
                    fs::remove_file(&p).map_err(io_err("remove", &p))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_blob_bytes_refuses_wrong_digest_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&Root::new(dir.path())).unwrap();
        let good = digest::sha256_of(b"abc");
        let wrong = digest::sha256_of(b"abd");
        assert!(matches!(
            store.put_blob_bytes(&wrong, b"abc"),
            Err(Error::DigestMismatch { .. })
        ));
        store.put_blob_bytes(&good, b"abc").unwrap();
        store.put_blob_bytes(&good, b"abc").unwrap();
        assert_eq!(store.read_blob(&good).unwrap(), b"abc");
        assert!(!store.has_blob(&wrong));
    }
}
