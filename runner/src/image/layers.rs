//! The unpacked layers: each layer is unpacked once into
//! `layers/<alg>/<hex of diff_id>/` (see [`crate::paths`]), shared by every
//! image using it, and removed by `prune` once nothing uses it.
//!
//! Unpacking ([`super::unpack`]) goes into a private temp dir that is renamed
//! into place only when complete and verified; a concurrent unpack of the
//! same layer loses the rename race harmlessly. Any failure removes the temp
//! dir; one an interrupted runner left behind is removed by the next command
//! ([`remove_abandoned_unpacks`]). An unpack in progress holds an exclusive
//! `flock` on its directory, which dies with its process: a directory whose
//! lock can be taken has no owner left. The directory is created under a
//! hidden name and renamed to `unpack-*` only once locked, so no cleaner
//! sees it unlocked.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

use crate::image::digest::Digest;
use crate::image::store::ImageStore;
use crate::image::unpack::{unpack_into, Error, Result, Whiteouts};
use crate::paths::Root;

/// Removes a temp dir on drop unless disarmed; holds its lock until then.
struct TempDir(Option<PathBuf>, Option<Flock<File>>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Locks directory `dir` exclusively without waiting; `None` if another
/// process holds it (or it cannot be opened).
fn try_lock_dir(dir: &Path) -> Option<Flock<File>> {
    let file = File::open(dir).ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

/// Removes the `tmp/unpack-*` directories of unpacks whose runner is gone
/// (interrupted or killed), and returns how many. Unpacks in progress are
/// locked and kept.
pub fn remove_abandoned_unpacks(root: &Root) -> usize {
    let Ok(entries) = fs::read_dir(root.tmp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // `.unpack-HEX-PID-SEQ` lives unlocked for a moment before its rename:
        // only its owner's death makes it abandoned.
        if let Some(rest) = name.strip_prefix(".unpack-") {
            if !owner_alive(rest) && fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        if !name.starts_with("unpack-") {
            continue;
        }
        if let Some(_lock) = try_lock_dir(&path) {
            if fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether the process named in `HEX-PID-SEQ` still runs (or the name is
/// not ours to judge).
fn owner_alive(hex_pid_seq: &str) -> bool {
    let pid = hex_pid_seq
        .split('-')
        .nth(1)
        .and_then(|p| p.parse::<i32>().ok());
    match pid {
        Some(pid) if pid > 0 => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        _ => true,
    }
}

static UNPACK_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A layer unpacked and verified into a temporary directory beside the
/// layers, not in place yet; dropped without [`Unpacked::install`], it is removed.
pub struct Unpacked {
    tmp: TempDir,
    diff_id: Digest,
    final_dir: PathBuf,
}

/// Unpacks the layer stream `blob` (compressed or not) into a temporary
/// directory, verifying it against `diff_id`.
pub fn unpack_layer(root: &Root, blob: impl Read, diff_id: &Digest) -> Result<Unpacked> {
    let name = format!(
        "unpack-{}-{}-{}",
        diff_id.hex(),
        std::process::id(),
        UNPACK_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let hidden = root.tmp_dir().join(format!(".{name}"));
    let tmp = root.tmp_dir().join(name);
    let io_err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            layer: diff_id.clone(),
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(&hidden).map_err(io_err("create", &hidden))?;
    let mut guard = TempDir(Some(hidden.clone()), None);
    let lock = File::open(&hidden)
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e)))
        .map_err(io_err("lock", &hidden))?;
    guard.1 = Some(lock);
    fs::rename(&hidden, &tmp).map_err(io_err("rename", &hidden))?;
    guard.0 = Some(tmp.clone());
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &tmp))?;
    unpack_into(blob, &tmp, diff_id, Whiteouts::Overlay)?;
    Ok(Unpacked {
        tmp: guard,
        diff_id: diff_id.clone(),
        final_dir: root.layer(diff_id),
    })
}

impl Unpacked {
    /// Moves the layer into place and returns its directory. Safe against
    /// concurrent runners: if another one installed the layer first, theirs
    /// is kept.
    pub fn install(mut self) -> Result<PathBuf> {
        let final_dir = self.final_dir.clone();
        let tmp = self
            .tmp
            .0
            .clone()
            .expect("an unpacked layer has its directory");
        let io_err = |action, path: &Path, source| Error::Io {
            layer: self.diff_id.clone(),
            action,
            path: path.to_owned(),
            source,
        };
        let parent = final_dir.parent().expect("layer dir has a parent");
        fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
        match fs::rename(&tmp, &final_dir) {
            Ok(()) => {
                self.tmp.0 = None;
                Ok(final_dir)
            }
            // Another runner finished the same layer first: theirs is as good as ours.
            Err(_) if final_dir.is_dir() => Ok(final_dir),
            Err(e) => Err(io_err("rename into", &final_dir, e)),
        }
    }
}

/// Makes sure the layer `diff_id` (stored as blob `blob`) is unpacked, and
/// returns its directory. Unpacks at most once; safe against concurrent runners.
pub fn ensure_layer(
    root: &Root,
    store: &ImageStore,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<PathBuf> {
    let final_dir = root.layer(diff_id);
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    unpack_layer(root, store.open_blob(blob)?, diff_id)?.install()
}

/// Unpacks every missing layer, independent layers in parallel, and returns
/// the layer directories in order (base first).
pub fn ensure_layers(
    root: &Root,
    store: &ImageStore,
    layers: &[(Digest, Digest)],
) -> Result<Vec<PathBuf>> {
    let missing = layers
        .iter()
        .filter(|(_, diff_id)| !root.layer(diff_id).is_dir())
        .count();
    if missing == 0 {
        return Ok(layers.iter().map(|(_, d)| root.layer(d)).collect());
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(missing);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PathBuf>>>> =
        Mutex::new((0..layers.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((blob, diff_id)) = layers.get(i) else {
                    break;
                };
                let r = ensure_layer(root, store, blob, diff_id);
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every layer was processed"))
        .collect()
}

/// Removes every unpacked layer whose diff_id is not in `keep`. Returns how many went.
pub fn remove_unused_layers(
    root: &Root,
    keep: &std::collections::BTreeSet<Digest>,
) -> Result<usize, io::Error> {
    let mut removed = 0;
    let Ok(algs) = fs::read_dir(root.layers_dir()) else {
        return Ok(0);
    };
    for alg in algs {
        let alg = alg?;
        for layer in fs::read_dir(alg.path())? {
            let layer = layer?;
            let text = format!(
                "{}:{}",
                alg.file_name().to_string_lossy(),
                layer.file_name().to_string_lossy()
            );
            if !text.parse::<Digest>().is_ok_and(|d| keep.contains(&d)) {
                fs::remove_dir_all(layer.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_unpack_is_removed_only_once_its_owner_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::prepare(dir.path().join("root")).unwrap();
        fs::create_dir_all(root.tmp_dir()).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let abandoned = root.tmp_dir().join(format!(".unpack-ab12-{dead}-0"));
        let live = root
            .tmp_dir()
            .join(format!(".unpack-ab12-{}-0", std::process::id()));
        fs::create_dir(&abandoned).unwrap();
        fs::create_dir(&live).unwrap();
        assert_eq!(remove_abandoned_unpacks(&root), 1);
        assert!(!abandoned.exists());
        assert!(live.exists(), "its owner (this test) still runs");
    }
}
