//! The local image store: verified blobs by digest and the local images. This
//! is the runner's only door to stored content. It is backed by the shared
//! [`store`] crate (the registry's content-addressed, deduplicated store with
//! SQLite metadata), kept in `<root>/store` (see [`crate::paths`]).
//!
//! How runner images map onto the store:
//! - each image repository is one store repository named
//!   `<registry>/<repository>`, the registry host lowercased and a `:port`
//!   written `__port` (`localhost:5000/library/app` ->
//!   `localhost__5000/library/app`); hosts never contain `_`, so the name maps
//!   back;
//! - the platform manifest is stored in that repository under the reference's
//!   tag; a reference pinned by a sha256 digest is stored under the tag
//!   `sha256-<hex>` instead, because the pinned digest may be an index's while
//!   the store keeps the platform manifest it resolved to;
//! - blobs downloaded before their image is recorded go into the repository
//!   [`PULLING`] (a name no image reference maps to) and are mounted into the
//!   image's repository, without a copy, when the image is recorded;
//! - content is stored once whatever the number of images using it; a blob no
//!   manifest references is swept by [`ImageStore::remove_unused_blobs`].
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

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use store::{ByteStream, GcOptions, RepoName, Store, StoreConfig, Tag};

use crate::image::digest::{Algorithm, Digest};
use crate::image::oci::{Descriptor, ImageConfig, Manifest, Platform};
use crate::image::reference::Reference;
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

/// Store repository holding blobs whose image is not recorded yet.
pub const PULLING: &str = "runner/pulling";

fn pulling() -> RepoName {
    PULLING.parse().expect("PULLING is a valid repository name")
}

/// Where an image reference lives in the store: its repository and tag.
fn locate(reference: &Reference) -> Result<(RepoName, Tag)> {
    let unstorable = |reason: String| Error::Unstorable {
        reference: reference.to_string(),
        reason,
    };
    if reference.registry.contains('_') {
        return Err(unstorable("registry host contains '_'".into()));
    }
    let host = reference.registry.to_ascii_lowercase().replace(':', "__");
    let repo = format!("{host}/{}", reference.repository)
        .parse()
        .map_err(|e| unstorable(format!("{e}")))?;
    let tag = match (&reference.digest, &reference.tag) {
        (Some(d), _) if d.algorithm() == Algorithm::Sha256 => format!("sha256-{}", d.hex()),
        (Some(_), _) => return Err(unstorable("only sha256 digests can be pinned".into())),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_owned(),
    };
    let tag = tag.parse().map_err(|e| unstorable(format!("{e}")))?;
    Ok((repo, tag))
}

/// The image reference stored as `tag` in `repo` (the inverse of [`locate`]).
fn reference_of(repo: &str, tag: &str) -> Option<Reference> {
    let (host, repository) = repo.split_once('/')?;
    let host = host.replace("__", ":");
    let pinned = tag
        .strip_prefix("sha256-")
        .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
    let text = match pinned {
        Some(d) => format!("{host}/{repository}@{d}"),
        None => format!("{host}/{repository}:{tag}"),
    };
    text.parse().ok()
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

    /// Whether the blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self
            .block_on(self.store.meta().blob_size(digest))?
            .is_some())
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
        let body = futures::stream::iter([Ok(Bytes::copy_from_slice(bytes))]);
        let len = Some(bytes.len() as u64);
        Ok(self.block_on(self.store.put_blob(&pulling(), digest, len, body))?)
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
        Ok(Some((stored.row.digest, manifest)))
    }

    /// Records `manifest` (a platform manifest's bytes) as image `reference`,
    /// replacing what it named before. Its config and layers must be stored.
    pub fn put_image(&self, reference: &Reference, manifest: &[u8]) -> Result<()> {
        let (repo, tag) = locate(reference)?;
        let parsed: Manifest = parse_json(manifest, "manifest", reference)?;
        for d in blobs_of(&parsed) {
            self.link_blob(&repo, d)?;
        }
        let previous = self.tagged(&repo, &tag)?;
        // A manifest without mediaType was served as an OCI manifest (pull
        // resolved indexes already).
        let content_type = parsed
            .media_type
            .is_none()
            .then_some(store::manifest::OCI_MANIFEST);
        let put = self.block_on(self.store.put_manifest(
            &repo,
            &store::Reference::Tag(tag),
            content_type,
            Bytes::copy_from_slice(manifest),
            &[],
        ))?;
        if let Some((old, _)) = previous.filter(|(old, _)| old != &put.digest) {
            self.drop_if_untagged(&repo, &old)?;
        }
        for d in blobs_of(&parsed) {
            match self.block_on(self.store.delete_blob(&pulling(), d)) {
                Ok(()) | Err(store::Error::BlobUnknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Makes stored blob `digest` visible in `repo`. The store mounts only
    /// from a named repository: [`PULLING`] first (a fresh download), then
    /// the other images' repositories (a layer they share, not downloaded
    /// again). The runner owns every repository of its store.
    fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.block_on(self.store.blob_size(repo, digest)).is_ok() {
            return Ok(());
        }
        if self.block_on(self.store.mount_blob(repo, digest, &pulling()))? {
            return Ok(());
        }
        for name in self.block_on(self.store.repositories(None, u64::MAX))? {
            let from: RepoName = name.parse()?;
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
        self.block_on(self.store.delete_manifest(repo, &by_digest))?;
        for d in blobs_of(&manifest).filter(|d| !used.contains(*d)) {
            match self.block_on(self.store.delete_blob(repo, d)) {
                Ok(()) | Err(store::Error::BlobUnknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        match self.block_on(self.store.tags(repo, None, u64::MAX)) {
            Ok(tags) => Ok(tags.to_vec()),
            Err(store::Error::NameUnknown { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Looks up a local image, with its config.
    pub fn get_image(&self, reference: &Reference) -> Result<Option<ImageRecord>> {
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
        self.block_on(
            self.store
                .delete_manifest(&repo, &store::Reference::Tag(tag)),
        )?;
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
mod tests {
    use super::*;
    use crate::image::digest::sha256_of;

    fn open(dir: &tempfile::TempDir) -> ImageStore {
        ImageStore::open(&Root::new(dir.path())).unwrap()
    }

    fn blob(store: &ImageStore, bytes: &[u8]) -> Descriptor {
        let digest = sha256_of(bytes);
        store.put_blob_bytes(&digest, bytes).unwrap();
        Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest,
            size: bytes.len() as u64,
            platform: None,
        }
    }

    /// Stores config and layers of an image and records it as `reference`.
    fn image(store: &ImageStore, reference: &str, layers: &[&[u8]]) -> ImageRecord {
        let layers: Vec<Descriptor> = layers.iter().map(|l| blob(store, l)).collect();
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = blob(store, &serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": store::manifest::OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config.digest, "size": config.size },
            "layers": layers,
        });
        let reference: Reference = reference.parse().unwrap();
        store
            .put_image(&reference, &serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        store.get_image(&reference).unwrap().unwrap()
    }

    fn blobs_of_record(r: &ImageRecord) -> Vec<Digest> {
        std::iter::once(r.config.clone())
            .chain(r.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }

    #[test]
    fn put_blob_bytes_refuses_wrong_digest_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let good = sha256_of(b"abc");
        let wrong = sha256_of(b"abd");
        assert!(matches!(
            store.put_blob_bytes(&wrong, b"abc"),
            Err(Error::DigestMismatch { .. })
        ));
        store.put_blob_bytes(&good, b"abc").unwrap();
        store.put_blob_bytes(&good, b"abc").unwrap();
        assert_eq!(store.read_blob(&good).unwrap(), b"abc");
        assert!(!store.has_blob(&wrong).unwrap());
    }

    #[test]
    fn put_blob_file_stores_a_matching_file_and_drops_a_mismatching_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let store = open(&dir);
        let good = root.tmp_dir().join("good.partial");
        fs::write(&good, b"layer").unwrap();
        let digest = sha256_of(b"layer");
        store.put_blob_file(&digest, &good).unwrap();
        assert!(!good.exists());
        let mut read = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"layer");
        let bad = root.tmp_dir().join("bad.partial");
        fs::write(&bad, b"tampered").unwrap();
        let wanted = sha256_of(b"other");
        assert!(matches!(
            store.put_blob_file(&wanted, &bad),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(!bad.exists());
        assert!(!store.has_blob(&wanted).unwrap());
    }

    #[test]
    fn images_map_to_store_repositories_and_tags_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let pinned = format!("localhost:5000/tools/app@{}", sha256_of(b"index"));
        let one = image(
            &store,
            "localhost:5000/library/app:latest",
            &[b"base", b"one"],
        );
        image(&store, &pinned, &[b"base", b"pinned"]);
        let (repo, tag) = locate(&"localhost:5000/library/app:latest".parse().unwrap()).unwrap();
        assert_eq!(repo.as_str(), "localhost__5000/library/app");
        assert_eq!(tag.as_str(), "latest");
        assert_eq!(one.layers.len(), 2);
        assert_eq!(one.diff_ids, blobs_of_record(&one)[1..]);
        assert_eq!(one.platform.to_string(), "linux/amd64");
        let listed: Vec<String> = store
            .list_images()
            .unwrap()
            .into_iter()
            .map(|r| r.reference)
            .collect();
        assert_eq!(
            listed,
            ["localhost:5000/library/app:latest", pinned.as_str()]
        );
        assert!(store
            .get_image(&"localhost:5000/library/app:other".parse().unwrap())
            .unwrap()
            .is_none());
    }

    #[test]
    fn remove_image_keeps_what_another_image_uses() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let keep = image(&store, "example.com/a:1", &[b"shared", b"only-a"]);
        let gone = image(&store, "example.com/b:1", &[b"shared", b"only-b"]);
        let b_ref: Reference = "example.com/b:1".parse().unwrap();
        let removed = store.remove_image(&b_ref).unwrap();
        assert_eq!(removed.manifest, gone.manifest);
        assert!(store.get_image(&b_ref).unwrap().is_none());
        assert!(matches!(
            store.remove_image(&b_ref),
            Err(Error::ImageNotFound { .. })
        ));
        let b: RepoName = "example.com/b".parse().unwrap();
        for d in blobs_of_record(&gone) {
            let visible = store.block_on(store.store.blob_size(&b, &d));
            assert!(
                visible.is_err(),
                "{d} still linked to the removed image's repository"
            );
        }
        for d in blobs_of_record(&keep) {
            assert!(!store.read_blob(&d).unwrap().is_empty());
        }
        assert_eq!(store.list_images().unwrap().len(), 1);
    }

    #[test]
    fn retagging_forgets_the_old_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let old = image(&store, "example.com/a:latest", &[b"v1"]);
        let new = image(&store, "example.com/a:latest", &[b"v2"]);
        let a: RepoName = "example.com/a".parse().unwrap();
        let by_old = store::Reference::Digest(old.manifest.clone());
        assert!(store
            .block_on(store.store.manifest(&a, &by_old, false))
            .is_err());
        assert!(store
            .block_on(store.store.blob_size(&a, &old.layers[0].digest))
            .is_err());
        let found = store
            .get_image(&"example.com/a:latest".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(found.manifest, new.manifest);
    }

    #[test]
    fn references_without_a_place_in_the_store_are_refused() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let reference: Reference = format!("example.com/a@{sha512}").parse().unwrap();
        assert!(matches!(locate(&reference), Err(Error::Unstorable { .. })));
        // Docker's grammar has no `_` in hosts; the parser refuses them first.
        assert!("my_host:5000/a:1".parse::<Reference>().is_err());
        assert_eq!(
            reference_of("localhost__5000/library/app", "1.0")
                .unwrap()
                .to_string(),
            "localhost:5000/library/app:1.0"
        );
    }
}
