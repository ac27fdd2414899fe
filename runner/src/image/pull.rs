//! `runner pull`: resolve a reference to a platform manifest, download the
//! config and every missing layer (in parallel, resumable, verified), unpack
//! each layer while it downloads, and record the image in the local store.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::image::auth::{self, AuthFile, Credentials};
use crate::image::client::{self, Client};
use crate::image::digest::Digest;
use crate::image::layers;
use crate::image::oci::{self, ImageConfig, Index, Manifest, Platform};
use crate::image::reference::Reference;
use crate::image::store::{self as image_store, ImageRecord, ImageStore};
use crate::image::unpack;
use crate::paths::Root;

/// Errors from pulling an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the registry failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// An auth file could not be read.
    #[error(transparent)]
    Auth(#[from] auth::Error),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] image_store::Error),
    /// A layer could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    /// A manifest, index or config is not valid JSON of the expected shape.
    #[error("{what} of {reference} is malformed: {source}")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// The image.
        reference: String,
        /// Parse error.
        source: serde_json::Error,
    },
    /// No index entry matches the wanted platform.
    #[error("no matching manifest for {platform} in the manifest list entries of {reference} (it has: {available})")]
    NoMatchingPlatform {
        /// The image.
        reference: String,
        /// Wanted platform.
        platform: Platform,
        /// Platforms present.
        available: String,
    },
    /// A single-platform image is for another platform than the wanted one.
    #[error("{reference} is a single-platform image for {available}, not {platform}")]
    WrongPlatform {
        /// The image.
        reference: String,
        /// Wanted platform.
        platform: String,
        /// Platforms present.
        available: String,
    },
    /// Layer count and diff_id count differ.
    #[error("{reference}: manifest has {layers} layers but config has {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// The image.
        reference: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// The state root's filesystem is full; what the pull had written of the
    /// layer is removed, so freeing space is all a retry needs.
    #[error("no space left on device under {}: free space and pull again", root.display())]
    NoSpace {
        /// The state root.
        root: std::path::PathBuf,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Platform to resolve an index to; the host's by default.
    pub platform: Option<Platform>,
    /// How registries are reached (plain-HTTP hosts, trusted CAs).
    pub registries: client::Settings,
}

/// Credentials for `host`: `runner login`'s file first, then Docker's config.
pub fn credentials_for(root: &Root, host: &str) -> Result<Option<Credentials>> {
    if let Some(c) = AuthFile::load(&root.auth_file())?.get(host) {
        return Ok(Some(c));
    }
    match auth::docker_config_file() {
        Some(file) => Ok(AuthFile::load(&file)?.get(host)),
        None => Ok(None),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    reference: &Reference,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Malformed {
        what,
        reference: reference.to_string(),
        source,
    })
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    if oci::is_index(media_type) {
        return true;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .is_ok_and(|p| p.manifests.is_some() && p.layers.is_none())
}

/// Progress shown on a terminal: one updating bar on stderr.
struct Progress {
    total: u64,
    done: AtomicU64,
    finished_layers: AtomicUsize,
    layers: usize,
}

impl Progress {
    fn line(&self) -> String {
        const WIDTH: u64 = 30;
        let done = self.done.load(Ordering::Relaxed).min(self.total);
        let filled = (done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        format!(
            "\r[{}{}] {}/{} layers, {:.1}/{:.1} MiB",
            "#".repeat(filled as usize),
            " ".repeat((WIDTH - filled) as usize),
            self.finished_layers.load(Ordering::Relaxed),
            self.layers,
            done as f64 / 1048576.0,
            self.total as f64 / 1048576.0
        )
    }
}

/// Pulls `reference` into the store and returns its record.
pub fn pull(
    root: &Root,
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
) -> Result<ImageRecord> {
    let creds = credentials_for(root, &reference.registry)?;
    let client = Client::new(reference, &options.registries, creds)?;
    let platform = options.platform.clone().unwrap_or_else(Platform::host);
    let mut fetched = client.get_manifest(&reference.reference_str())?;
    if is_index(&fetched.media_type, &fetched.bytes) {
        let index: Index = parse(&fetched.bytes, "index", reference)?;
        let chosen = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| Error::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: platform.clone(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        fetched = client.get_manifest(&chosen.digest.to_string())?;
    }
    let manifest: Manifest = parse(&fetched.bytes, "manifest", reference)?;
    let stored = store.has_blob(&manifest.config.digest)?;
    let config_bytes = if stored {
        store.read_blob(&manifest.config.digest)?
    } else {
        client.get_small_blob(&manifest.config.digest)?
    };
    let config: ImageConfig = parse(&config_bytes, "config", reference)?;
    let image_platform = Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: None,
    };
    // Nothing of an image for another platform is stored.
    if !config.os.is_empty() && !platform.matches(&image_platform) {
        return Err(Error::WrongPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: image_platform.to_string(),
        });
    }
    if !stored {
        store.put_blob_bytes(&manifest.config.digest, &config_bytes)?;
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::LayerCountMismatch {
            reference: reference.to_string(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    let pairs: Vec<(Digest, Digest)> = manifest
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .zip(config.rootfs.diff_ids.iter().cloned())
        .collect();
    download_layers(root, store, &client, &manifest, &pairs)?;
    // Layers stored earlier but not unpacked yet (a no-op for the rest).
    layers::ensure_layers(root, store, &pairs)?;
    store.put_image(reference, &fetched.bytes)?;
    Ok(ImageRecord {
        reference: reference.to_string(),
        manifest: fetched.digest,
        config: manifest.config.digest,
        layers: manifest.layers,
        diff_ids: config.rootfs.diff_ids.clone(),
        platform: image_platform,
        image_config: config,
    })
}

/// Downloads the layers (blob, diff_id) the store lacks, several at once, each
/// unpacked as it downloads.
fn download_layers(
    root: &Root,
    store: &ImageStore,
    client: &Client,
    manifest: &Manifest,
    layers: &[(Digest, Digest)],
) -> Result<()> {
    let mut missing: Vec<&(Digest, Digest)> = Vec::new();
    for pair in layers {
        if !store.has_blob(&pair.0)? {
            missing.push(pair);
        }
    }
    missing.sort();
    missing.dedup_by(|a, b| a.0 == b.0);
    if missing.is_empty() {
        return Ok(());
    }
    let progress = Progress {
        total: manifest
            .layers
            .iter()
            .filter(|l| missing.iter().any(|(d, _)| d == &l.digest))
            .map(|l| l.size)
            .sum(),
        done: AtomicU64::new(0),
        finished_layers: AtomicUsize::new(0),
        layers: missing.len(),
    };
    let show = std::io::stderr().is_terminal();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        if show {
            let progress = &progress;
            s.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(Duration::from_millis(150))
                {
                    eprint!("{}", progress.line());
                }
                eprintln!("{}", progress.line());
            });
        }
        let workers: Vec<_> = (0..missing.len().min(4))
            .map(|_| {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((digest, diff_id)) = missing.get(i) else {
                        break;
                    };
                    let r = fetch_layer(root, store, client, digest, diff_id, &progress.done);
                    match r {
                        Ok(_) => {
                            progress.finished_layers.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            first_error.lock().expect("error lock").get_or_insert(e);
                            break;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        drop(stop_tx);
    });
    let _ = std::io::stderr().flush();
    match first_error.into_inner().expect("error lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// [`download_and_unpack`], and on a full disk [`Error::NoSpace`]: the
/// partial download goes too (kept otherwise, to resume an interrupted pull,
/// but its bytes are what the next pull needs), as the unpack in progress does.
fn fetch_layer(
    root: &Root,
    store: &ImageStore,
    client: &Client,
    digest: &Digest,
    diff_id: &Digest,
    done: &AtomicU64,
) -> Result<()> {
    match download_and_unpack(root, store, client, digest, diff_id, done) {
        Err(e) if no_space(&e) => {
            let _ = std::fs::remove_file(root.partial_download(digest));
            Err(Error::NoSpace {
                root: root.dir().to_path_buf(),
            })
        }
        fetched => fetched,
    }
}

/// Whether `e`, or anything it wraps, is a write that found no space left
/// (ENOSPC, EDQUOT), in the runner's own I/O or in the store's.
fn no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        if let Some(e) = c.downcast_ref::<store::Error>() {
            if matches!(e.fault(), Some((_, store::Fault::Full))) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// Downloads one layer into the store and unpacks it on the way: the bytes go
/// to the download file and, through a bounded queue, to an unpacker thread.
/// The unpacked layer is moved into place only once the download verified
/// against `digest` (and the unpack against `diff_id`).
fn download_and_unpack(
    root: &Root,
    store: &ImageStore,
    client: &Client,
    digest: &Digest,
    diff_id: &Digest,
    done: &AtomicU64,
) -> Result<()> {
    let partial = root.partial_download(digest);
    // One download of a blob per root at a time, across processes (two
    // pulls, or a build's stages side by side, may want the same layer):
    // the second waits for the first, then finds the layer in place.
    let _lock = lock_download(&partial, digest)?;
    if root.layer(diff_id).is_dir() && store.has_blob(digest)? {
        return Ok(());
    }
    if root.layer(diff_id).is_dir() {
        client.download_blob(digest, &partial, &mut |bytes| {
            done.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        })?;
        return Ok(store.put_hashed_file(digest, &partial)?);
    }
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    std::thread::scope(|s| {
        let unpacker = s.spawn(move || layers::unpack_layer(root, QueueReader::new(rx), diff_id));
        let mut tx = Some(tx);
        let downloaded = client.download_blob(digest, &partial, &mut |bytes| {
            done.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            // An unpacker that stopped (done, or failed) no longer reads.
            if tx.as_ref().is_some_and(|t| t.send(bytes.to_vec()).is_err()) {
                tx = None;
            }
        });
        drop(tx);
        let unpacked = match unpacker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // The blob is stored only once its layer unpacked: an unpack that ran
        // out of space frees its bytes while the download may still finish,
        // and a blob stored then would keep the space the error says is free;
        // a layer that does not unpack (hostile paths) is not kept either.
        downloaded?;
        let unpacked = unpacked.inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        store.put_hashed_file(digest, &partial)?;
        unpacked.install()?;
        Ok(())
    })
}

/// An exclusive lock on `partial`'s download: a `.lock` file beside it,
/// removed by its holder when done. A waiter that then holds the lock of a
/// removed file takes a new one (the inode at the path must be the one it
/// locked).
struct DownloadLock {
    path: PathBuf,
    _lock: Flock<std::fs::File>,
}

impl Drop for DownloadLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_download(partial: &Path, digest: &Digest) -> Result<DownloadLock> {
    use std::os::unix::fs::MetadataExt;
    let path = partial.with_extension("partial.lock");
    let fail = |source| unpack::Error::Io {
        layer: digest.clone(),
        action: "lock",
        path: path.clone(),
        source,
    };
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(fail)?;
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| fail(e.into()))?;
        let held = lock.metadata().map_err(fail)?.ino();
        if std::fs::metadata(&path).is_ok_and(|m| m.ino() == held) {
            return Ok(DownloadLock { path, _lock: lock });
        }
    }
}

/// Reads the byte chunks sent through a queue, until its sender is gone.
struct QueueReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl QueueReader {
    fn new(rx: mpsc::Receiver<Vec<u8>>) -> QueueReader {
        QueueReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::no_space;
    use std::io;

    #[test]
    fn a_full_disk_is_found_through_wrappers() {
        let enospc = io::Error::from_raw_os_error(28);
        assert!(no_space(&enospc));
        assert!(
            no_space(&io::Error::other(enospc)),
            "wrapped by a worker thread"
        );
        let quota = io::Error::from(io::ErrorKind::QuotaExceeded);
        let unpack = crate::image::unpack::Error::Io {
            layer: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            action: "write",
            path: "x".into(),
            source: quota,
        };
        assert!(no_space(&unpack));
        assert!(!no_space(&io::Error::from(io::ErrorKind::PermissionDenied)));
    }
}
