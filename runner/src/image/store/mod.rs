//! The local image store: verified blobs by digest and the local images. This
//! is the runner's only door to stored content. It is backed by the shared
//! [`store`] crate (the registry's content-addressed, deduplicated store with
//! SQLite metadata), kept in `<root>/store` (see [`crate::paths`]).
//!
//! How runner images map onto the store is [`naming`]; [`cache`] keeps the
//! images `run` reads by reference, so that a `run` of a local image need
//! not open the store at all.
//!
//! The store is async. [`ImageStore`] owns a current-thread tokio runtime and
//! blocks on it, so the rest of the runner stays synchronous; several threads
//! may use one `ImageStore` at once (parallel downloads and unpacks).
//!
//! Closing matters: SQLite connections each run on a thread of their own and
//! the runtime keeps a pool of blocking threads, while the sandbox `clone`s,
//! which is only safe in a single-threaded process. [`ImageStore::close`] (or
//! dropping the store) closes the database and joins the runtime's threads;
//! [`with_store`] scopes a store to one closure.

pub mod cache;
mod naming;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use store::{ByteStream, GcOptions, RepoName, Store, StoreConfig, Tag};

use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageConfig, Manifest, Platform};
use crate::image::reference::Reference;
use crate::paths::Root;
use naming::{locate, pulling, reference_of};

pub use naming::PULLING;

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
    /// The reference has no place in the store.
    #[error("image {reference} cannot be stored locally: {reason}")]
    Unstorable {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A stored manifest or config is unreadable.
    #[error("corrupt {what} of {reference}: {source}")]
    CorruptImage {
        /// Which document.
        what: &'static str,
        /// The image.
        reference: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The shared store failed.
    #[error("image store: {0}")]
    Store(store::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        match e {
            store::Error::DigestMismatch { expected, actual } => {
                Error::DigestMismatch { expected, actual }
            }
            store::Error::BlobUnknown { digest } => Error::BlobNotFound { digest },
            e => Error::Store(e),
        }
    }
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

/// A local image, as read back from the store.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The full reference it is stored as.
    pub reference: String,
    /// Digest of the platform manifest.
    pub manifest: Digest,
    /// Digest of the image config.
    pub config: Digest,
    /// Layer descriptors (compressed blobs), base first.
    pub layers: Vec<Descriptor>,
    /// Uncompressed layer digests, base first.
    pub diff_ids: Vec<Digest>,
    /// Platform of the image config.
    pub platform: Platform,
    /// The image config itself.
    pub image_config: ImageConfig,
}

impl ImageRecord {
    /// (layer blob, diff_id) pairs, base first: what unpacking needs.
    pub fn layer_pairs(&self) -> Vec<(Digest, Digest)> {
        self.layers
            .iter()
            .map(|l| l.digest.clone())
            .zip(self.diff_ids.iter().cloned())
            .collect()
    }
}

/// Config and layer digests of a manifest: the blobs an image uses.
fn blobs_of(manifest: &Manifest) -> impl Iterator<Item = &Digest> {
    std::iter::once(&manifest.config.digest).chain(manifest.layers.iter().map(|l| &l.digest))
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    reference: &dyn std::fmt::Display,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::CorruptImage {
        what,
        reference: reference.to_string(),
        source,
    })
}

/// Opens the store under `root`, runs `f` with it, and closes the store
/// whatever `f` returned, so that the caller is single-threaded again.
pub fn with_store<T, E: From<Error>>(
    root: &Root,
    f: impl FnOnce(&ImageStore) -> Result<T, E>,
) -> Result<T, E> {
    let store = ImageStore::open(root)?;
    let out = f(&store);
    store.close();
    out
}

/// The local image store. Dropping it closes it (see [`ImageStore::close`]).
pub struct ImageStore {
    store: Store,
    runtime: tokio::runtime::Runtime,
    root: Root,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore").finish_non_exhaustive()
    }
}

impl Drop for ImageStore {
    fn drop(&mut self) {
        // Each SQLite connection's thread exits once it is closed; the
        // runtime, dropped right after, joins its blocking threads.
        self.runtime.block_on(self.store.close());
    }
}

/// A stored blob being read; its bytes stream from the store as they are consumed.
pub struct BlobReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    stream: ByteStream,
    chunk: Bytes,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Root) -> Result<ImageStore> {
        let dir = root.store_dir();
        let tmp = root.tmp_dir();
        for d in [&dir, &tmp] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err("start a runtime for", &dir))?;
        // Runners starting together on a fresh root would race to create and
        // migrate the database: they open it one at a time.
        let lock_path = root.store_lock();
        let lock_file = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_err("lock", &lock_path)(errno.into()))?;
        let store = runtime.block_on(Store::open(&StoreConfig::local(&dir)));
        drop(lock);
        Ok(ImageStore {
            store: store?,
            runtime,
            root: root.clone(),
        })
    }

    /// Closes the store: its database connections end, and the threads they
    /// and the runtime ran on are joined. Same as dropping it; named so that
    /// callers about to `clone` say what they rely on.
    pub fn close(self) {
        drop(self);
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Whether the blob is stored where an image can use it: linked in some
    /// repository (an image's, or [`PULLING`]'s). A blob whose last image
    /// went within the store's GC grace period still has its bytes but no
    /// link; it counts as absent, so a pull fetches (and links) it again.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(!self.linked_in(digest, 1)?.is_empty())
    }

    fn linked_in(&self, digest: &Digest, limit: u32) -> Result<Vec<RepoName>> {
        Ok(self.block_on(self.store.repos_holding_blob(digest, limit))?)
    }

    /// Opens a stored blob for reading; its bytes stream from the store.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader<'_>> {
        if !self.has_blob(digest)? {
            return Err(Error::BlobNotFound {
                digest: digest.clone(),
            });
        }
        let stream = self.block_on(self.store.read_blob(digest, None))?;
        Ok(BlobReader {
            runtime: &self.runtime,
            stream,
            chunk: Bytes::new(),
        })
    }

    /// Reads a small stored blob (manifest, config) whole, re-verifying it.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Store(store::Error::BodyIncomplete { source: e }))?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores bytes under their digest; the store checks it.
    pub fn put_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let bytes = Bytes::copy_from_slice(bytes);
        Ok(self.block_on(self.store.put_blob_bytes(&pulling(), digest, bytes))?)
    }

    /// Moves a downloaded file into the store, which verifies its digest.
    /// The file is gone afterwards when it was stored, when the store already
    /// had the blob, and when it does not match `digest`.
    pub fn put_blob_file(&self, digest: &Digest, file: &Path) -> Result<()> {
        if self.has_blob(digest)? {
            return fs::remove_file(file).map_err(io_err("remove", file));
        }
        Ok(self.block_on(self.store.put_blob_file(&pulling(), digest, file))?)
    }

    /// [`ImageStore::put_blob_file`] for a file this process wrote and
    /// hashed as it wrote it (a verified download, a built layer): the store
    /// moves it in without reading it again. The file is gone afterwards.
    pub fn put_hashed_file(&self, digest: &Digest, file: &Path) -> Result<()> {
        if self.has_blob(digest)? {
            return fs::remove_file(file).map_err(io_err("remove", file));
        }
        Ok(self.block_on(self.store.put_hashed_file(&pulling(), digest, file))?)
    }

    /// The manifest stored as `tag` in `repo`, with its digest; `None` if there is none.
    fn tagged(&self, repo: &RepoName, tag: &Tag) -> Result<Option<(Digest, Manifest)>> {
        let found = self.block_on(self.store.manifest(
            repo,
            &store::Reference::Tag(tag.clone()),
            true,
        ));
        let stored = match found {
            Ok(m) => m,
            Err(store::Error::ManifestUnknown { .. } | store::Error::NameUnknown { .. }) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = stored.bytes.unwrap_or_default();
        let manifest = parse_json(&bytes, "manifest", &format_args!("{repo}:{tag}"))?;
        Ok(Some((stored.digest, manifest)))
    }

    /// Records `manifest` (a platform manifest's bytes) as image `reference`,
    /// replacing what it named before. Its config and layers must be stored.
    pub fn put_image(&self, reference: &Reference, manifest: &[u8]) -> Result<()> {
        let changed = self.put_image_uncached(reference, manifest);
        cache::drop_entry(&self.root, &reference.to_string());
        changed
    }

    fn put_image_uncached(&self, reference: &Reference, manifest: &[u8]) -> Result<()> {
        let (repo, tag) = locate(reference)?;
        let parsed: Manifest = parse_json(manifest, "manifest", reference)?;
        let previous = self.tagged(&repo, &tag)?;
        if previous
            .as_ref()
            .is_some_and(|(old, _)| *old == crate::image::digest::sha256_of(manifest))
        {
            return Ok(()); // tagged so already (a fully cached rebuild)
        }
        for d in blobs_of(&parsed) {
            self.reach_blob(&repo, d)?;
        }
        // A manifest without mediaType was served as an OCI manifest (pull
        // resolved indexes already).
        let content_type = parsed
            .media_type
            .is_none()
            .then_some(store::manifest::OCI_MANIFEST);
        // One commit: the manifest, its tag, and its blobs moved out of
        // [`PULLING`] (fresh downloads and built layers).
        let put = self.block_on(self.store.put_manifest_adopting(
            &repo,
            &store::Reference::Tag(tag),
            content_type,
            Bytes::copy_from_slice(manifest),
            &pulling(),
        ))?;
        if let Some((old, _)) = previous.filter(|(old, _)| old != &put.digest) {
            self.drop_if_untagged(&repo, &old)?;
        }
        Ok(())
    }

    /// Makes sure stored blob `digest` can be part of an image of `repo`:
    /// it is there already, or in [`PULLING`] (a fresh download or a built
    /// layer, which the manifest's put moves over), or else it is mounted
    /// from a repository that holds it (a layer shared with another image,
    /// not downloaded again). The store mounts only from a named
    /// repository; the runner owns every repository of its store.
    /// [`PULLING`] is looked at first: a racing put of the same image (two
    /// stages of a build on one base) moves blobs from there into `repo`.
    fn reach_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        for held in [&pulling(), repo] {
            if self.block_on(self.store.blob_size(held, digest)).is_ok() {
                return Ok(());
            }
        }
        for from in self.linked_in(digest, 4)? {
            if self.block_on(self.store.mount_blob(repo, digest, &from))? {
                return Ok(());
            }
        }
        Err(Error::BlobNotFound {
            digest: digest.clone(),
        })
    }

    /// Forgets manifest `digest` of `repo` if no tag points at it any more,
    /// and unlinks the blobs only it used.
    fn drop_if_untagged(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let mut used = BTreeSet::new();
        for t in self.tags(repo)? {
            let tag: Tag = t.parse()?;
            if let Some((d, m)) = self.tagged(repo, &tag)? {
                if &d == digest {
                    return Ok(());
                }
                used.extend(blobs_of(&m).cloned());
            }
        }
        let by_digest = store::Reference::Digest(digest.clone());
        let stored = match self.block_on(self.store.manifest(repo, &by_digest, true)) {
            Ok(m) => m,
            Err(store::Error::ManifestUnknown { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let manifest: Manifest = parse_json(
            &stored.bytes.unwrap_or_default(),
            "manifest",
            &format_args!("{repo}@{digest}"),
        )?;
        let only_its: Vec<Digest> = blobs_of(&manifest)
            .filter(|d| !used.contains(*d))
            .cloned()
            .collect();
        self.block_on(
            self.store
                .delete_manifest_unlinking(repo, digest, &only_its),
        )?;
        Ok(())
    }

    fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        match self.block_on(self.store.tags(repo, None, u64::MAX)) {
            Ok(tags) => Ok(tags.to_vec()),
            Err(store::Error::NameUnknown { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored manifest of a local image: its media type and bytes.
    pub fn manifest_bytes(&self, reference: &Reference) -> Result<Option<(String, Vec<u8>)>> {
        let (repo, tag) = locate(reference)?;
        let found = self.block_on(
            self.store
                .manifest(&repo, &store::Reference::Tag(tag), true),
        );
        match found {
            Ok(m) => {
                let bytes = m.bytes.unwrap_or_default();
                let media_type = serde_json::from_slice::<Manifest>(&bytes)
                    .ok()
                    .and_then(|p| p.media_type)
                    .unwrap_or_else(|| store::manifest::OCI_MANIFEST.to_owned());
                Ok(Some((media_type, bytes.to_vec())))
            }
            Err(store::Error::ManifestUnknown { .. } | store::Error::NameUnknown { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks up a local image, with its config.
    pub fn get_image(&self, reference: &Reference) -> Result<Option<ImageRecord>> {
        let lock = cache::CacheLock::take(&self.root);
        let record = self.read_image(reference)?;
        if let Some(r) = &record {
            cache::fill(&self.root, &lock, r);
        }
        Ok(record)
    }

    fn read_image(&self, reference: &Reference) -> Result<Option<ImageRecord>> {
        let (repo, tag) = locate(reference)?;
        let Some((digest, manifest)) = self.tagged(&repo, &tag)? else {
            return Ok(None);
        };
        let image_config: ImageConfig = parse_json(
            &self.read_blob(&manifest.config.digest)?,
            "config",
            reference,
        )?;
        Ok(Some(ImageRecord {
            reference: reference.to_string(),
            manifest: digest,
            config: manifest.config.digest,
            layers: manifest.layers,
            diff_ids: image_config.rootfs.diff_ids.clone(),
            platform: Platform {
                os: image_config.os.clone(),
                architecture: image_config.architecture.clone(),
                variant: None,
            },
            image_config,
        }))
    }

    /// Every local image, sorted by reference.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for name in self.block_on(self.store.repositories(None, u64::MAX))? {
            if name == PULLING {
                continue;
            }
            let repo: RepoName = name.parse()?;
            for tag in self.tags(&repo)? {
                if let Some(reference) = reference_of(&name, &tag) {
                    out.extend(self.get_image(&reference)?);
                }
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes an image and the blobs no other image uses.
    pub fn remove_image(&self, reference: &Reference) -> Result<ImageRecord> {
        let record = self
            .get_image(reference)?
            .ok_or_else(|| Error::ImageNotFound {
                reference: reference.to_string(),
            })?;
        let (repo, tag) = locate(reference)?;
        let deleted = self.block_on(
            self.store
                .delete_manifest(&repo, &store::Reference::Tag(tag)),
        );
        cache::drop_entry(&self.root, &reference.to_string());
        deleted?;
        self.drop_if_untagged(&repo, &record.manifest)?;
        self.remove_unused_blobs()?;
        Ok(record)
    }

    /// Deletes every blob no image uses (including those of unfinished pulls):
    /// the store's garbage collection with no grace period. Returns how many
    /// went. The store counts idleness in whole seconds, so a blob last used
    /// within the current second stays until the next sweep.
    pub fn remove_unused_blobs(&self) -> Result<usize> {
        let options = GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        };
        Ok(self.block_on(self.store.gc(&options))?.blobs.len())
    }
}

#[cfg(test)]
mod tests;
