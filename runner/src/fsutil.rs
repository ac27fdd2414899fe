//! Small filesystem helpers shared across the runner.
//!
//! - [`secure_join`], for the sandbox and for the code that reads an image's
//!   files from the host side (`bundle`, user lookup): paths an image
//!   controls are always resolved with it, never with the host's own symlink
//!   resolution.
//! - [`write_atomic`] and [`write_replace`], for every file the runner
//!   replaces whole (the seccomp cache, container records, `/etc` files).
//! - [`open_same`], for files listed earlier (a build context, a stage's
//!   layers) that someone else may swap for a symlink or another file before
//!   they are read.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

/// Opens `path` as the file it was when listed, whose (device, inode) was
/// `listed`, and not one swapped in since: the last component is not
/// followed (`O_NOFOLLOW`), and the opened file must have the listed
/// identity, so a symlink put anywhere on the path, or a file moved there,
/// is refused. `O_PATH` with `path_only` (for a directory to bind).
pub fn open_same(path: &Path, listed: (u64, u64), path_only: bool) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if path_only {
        flags |= libc::O_PATH;
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| changed(path, e))?;
    let m = f.metadata()?;
    if (m.dev(), m.ino()) != listed {
        return Err(changed(path, io::Error::other("another file is there now")));
    }
    Ok(f)
}

fn changed(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "{} changed after it was listed ({e}); run again",
            path.display()
        ),
    )
}

/// The names and `..`s of `path`, in order (`/` and `.` say nothing here).
fn steps(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Joins `path` under `root`, resolving symlinks as if `root` were `/`, so a
/// symlink in the image can never point a mount outside the container.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending = steps(path);
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_owned()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_keeps_symlinks_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", root.join("data/up")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/etc-link/x")).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/data/up/y")).unwrap(),
            root.join("tmp/y")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../a")).unwrap(),
            root.join("a")
        );
    }
}
