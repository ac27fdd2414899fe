//! Layer unpacking: one layer archive (gzip, zstd or plain tar) into a
//! directory ([`unpack_into`]). Where unpacked layers live, and how each is
//! unpacked only once, is [`super::layers`].
//!
//! - The uncompressed stream is hashed while it is read and must equal the
//!   diff_id from the image config.
//! - Whiteouts become overlayfs forms ([`Whiteouts::Overlay`]: a 0/0 char
//!   device, and `trusted.overlay.opaque=y` plus `user.overlay.opaque=y` for
//!   overlays mounted in a user namespace; rootless, only the latter, which
//!   a user may set), or are applied by deleting
//!   ([`Whiteouts::Apply`], used to flatten a bundle rootfs).
//! - Path traversal is refused: `..` components, absolute paths, symlinks
//!   whose relative target climbs out of the root, hardlinks to outside, and
//!   writing through a symlinked parent directory.
//! - Hardlinks, symlinks, device nodes, fifos, ownership, modes, mtimes and
//!   xattrs (PAX `SCHILY.xattr.*`) are preserved, except overlayfs' own
//!   (`trusted.overlay.*`, `user.overlay.*`), which an image must not set.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::image::digest::{Digest, HashingReader};
use crate::image::store as image_store;
use crate::sys;

/// Errors from unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive tried to write outside the layer directory.
    #[error("layer {layer}: refusing entry {entry:?}: {reason}")]
    PathTraversal {
        /// diff_id of the layer.
        layer: Digest,
        /// The offending entry path.
        entry: String,
        /// What it tried.
        reason: &'static str,
    },
    /// The uncompressed stream did not hash to the expected diff_id.
    #[error("layer diff_id mismatch: config says {expected}, content is {actual}")]
    DiffIdMismatch {
        /// diff_id from the image config.
        expected: Digest,
        /// Digest of the uncompressed bytes.
        actual: Digest,
    },
    /// A tar entry type the runner does not handle.
    #[error("layer {layer}: entry {entry:?} has unsupported type {kind:?}")]
    UnsupportedEntry {
        /// diff_id of the layer.
        layer: Digest,
        /// The entry path.
        entry: String,
        /// The tar type byte.
        kind: u8,
    },
    /// Filesystem or archive I/O failed.
    #[error("layer {layer}: {action} {path}: {source}")]
    Io {
        /// diff_id of the layer.
        layer: Digest,
        /// What was being done.
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// Rootless mode: a file's owner is outside the ids the user's
    /// namespace maps.
    #[error(
        "layer {layer}: {entry:?} is owned by uid {uid}, gid {gid}: rootless mode maps only \
         container ids 0 to {max} (from /etc/subuid and /etc/subgid); this image needs root \
         or a larger subordinate range",
        max = crate::rootless::subid::MAX_IDS
    )]
    UnmappedId {
        /// diff_id of the layer.
        layer: Digest,
        /// The entry path.
        entry: String,
        /// Its uid.
        uid: u32,
        /// Its gid.
        gid: u32,
    },
    /// The layer blob could not be read from the store.
    #[error(transparent)]
    Store(#[from] image_store::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Convert to overlayfs whiteouts (layer used as an overlay lower dir).
    Overlay,
    /// Delete what they hide (flattening layers into one directory).
    Apply,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The opaque marker for overlayfs mounted by root, and by a user namespace (`userxattr`).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Wraps a layer blob in the right decompressor, detected from its magic bytes.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(
            buffered,
        )?))
    } else {
        Ok(Box::new(buffered))
    }
}

struct Unpacker<'a> {
    dest: &'a Path,
    layer: &'a Digest,
    mode: Whiteouts,
    written: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, i64)>,
    /// Directories this unpack found or made real (not symlinks), so that
    /// their entries do not stat them again; whatever [`Unpacker::clear`]
    /// removes leaves it with everything under it.
    dirs: HashSet<PathBuf>,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths from tar have no NUL")
}

impl Unpacker<'_> {
    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        let path = path.to_owned();
        move |source| Error::Io {
            layer: self.layer.clone(),
            action,
            path,
            source,
        }
    }

    fn refuse(&self, entry: &[u8], reason: &'static str) -> Error {
        Error::PathTraversal {
            layer: self.layer.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason,
        }
    }

    /// Splits an archive path into safe relative components.
    fn components<'p>(&self, raw: &'p [u8]) -> Result<Vec<&'p [u8]>> {
        if raw.starts_with(b"/") {
            return Err(self.refuse(raw, "absolute path"));
        }
        let mut out = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(self.refuse(raw, "'..' component")),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// Makes sure every parent of `parts` is a real directory (creating missing ones),
    /// never a symlink, and returns the full destination path.
    fn prepare_parents(&mut self, raw: &[u8], parts: &[&[u8]]) -> Result<PathBuf> {
        let mut path = self.dest.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            path.push(OsStr::from_bytes(part));
            if i + 1 == parts.len() {
                break;
            }
            if self.dirs.contains(&path) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.refuse(raw, "parent directory is a symlink"))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(self.refuse(raw, "parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(self.io("mkdir", &path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(self.io("chmod", &path))?;
                }
                Err(e) => return Err(self.io("stat", &path)(e)),
            }
            self.dirs.insert(path.clone());
        }
        Ok(path)
    }

    /// Removes whatever is at `path` unless it is a directory and `keep_dir`.
    fn clear(&mut self, path: &Path, keep_dir: bool) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && keep_dir => Ok(()),
            Ok(m) => {
                self.dirs.retain(|d| !d.starts_with(path));
                if m.is_dir() {
                    fs::remove_dir_all(path).map_err(self.io("remove", path))
                } else {
                    fs::remove_file(path).map_err(self.io("remove", path))
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("stat", path)(e)),
        }
    }

    fn whiteout(&mut self, raw: &[u8], parts: &[&[u8]], name: &[u8]) -> Result<()> {
        let path = self.prepare_parents(raw, parts)?;
        let parent = path.parent().expect("whiteout has a parent").to_path_buf();
        if name == OPAQUE_MARKER.as_bytes() {
            match self.mode {
                Whiteouts::Overlay => {
                    // `trusted.*` takes root in the initial user namespace;
                    // rootless overlays read `user.overlay.opaque` only.
                    let names = if crate::rootless::active() {
                        &OPAQUE_XATTRS[1..]
                    } else {
                        &OPAQUE_XATTRS[..]
                    };
                    for name in names {
                        set_xattr(&parent, name, b"y")
                            .map_err(self.io("set opaque xattr on", &parent))?;
                    }
                }
                Whiteouts::Apply => {
                    let entries = fs::read_dir(&parent).map_err(self.io("list", &parent))?;
                    for e in entries {
                        let p = e.map_err(self.io("list", &parent))?.path();
                        if !self.written.contains(&p) {
                            self.clear(&p, false)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        let hidden_name = &name[WHITEOUT_PREFIX.len()..];
        // `.wh.`, `.wh..` and `.wh...` would hide the directory itself or its parent.
        if matches!(hidden_name, b"" | b"." | b"..") {
            return Err(self.refuse(raw, "whiteout of '.', '..' or nothing"));
        }
        let hidden = parent.join(OsStr::from_bytes(hidden_name));
        self.clear(&hidden, false)?;
        if self.mode == Whiteouts::Overlay {
            mknod(&hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| self.io("mknod whiteout", &hidden)(e.into()))?;
            self.written.insert(hidden);
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let parts = self.components(&raw)?;
        let Some(name) = parts.last().copied() else {
            return Ok(()); // the archive root itself
        };
        if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&raw, &parts, name);
        }
        let path = self.prepare_parents(&raw, &parts)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        // A regular file's metadata is set through its descriptor, and only
        // what differs from what it was created with.
        let mut file = None;
        match kind {
            tar::EntryType::Directory => {
                self.clear(&path, true)?;
                if !path.is_dir() {
                    fs::create_dir(&path).map_err(self.io("mkdir", &path))?;
                }
                self.dirs.insert(path.clone());
                self.dir_times.push((path.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let create = || {
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(0o600)
                        .open(&path)
                };
                // Most entries are new: clear what is there only when something is.
                let mut f = match create() {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.clear(&path, false)?;
                        create()
                    }
                    other => other,
                }
                .map_err(self.io("create", &path))?;
                io::copy(&mut entry, &mut f).map_err(self.io("write", &path))?;
                file = Some(f);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !target.starts_with(b"/") && escapes(parts.len() - 1, &target) {
                    return Err(self.refuse(&raw, "symlink target escapes the layer"));
                }
                self.clear(&path, false)?;
                symlink(OsStr::from_bytes(&target), &path).map_err(self.io("symlink", &path))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target_parts = self
                    .components(&target)
                    .map_err(|_| self.refuse(&raw, "hardlink target escapes the layer"))?;
                if target_parts.is_empty() {
                    return Err(self.refuse(&raw, "hardlink to the layer root"));
                }
                let target_path = self
                    .prepare_parents(&target, &target_parts)
                    .map_err(|_| self.refuse(&raw, "hardlink target escapes the layer"))?;
                self.clear(&path, false)?;
                fs::hard_link(&target_path, &path).map_err(self.io("hardlink", &path))?;
                self.written.insert(path);
                return Ok(()); // a hardlink shares the target's metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.clear(&path, false)?;
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, device(&header)),
                    tar::EntryType::Block => (SFlag::S_IFBLK, device(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknod(&path, sflag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| self.io("mknod", &path)(e.into()))?;
            }
            tar::EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(Error::UnsupportedEntry {
                    layer: self.layer.clone(),
                    entry: String::from_utf8_lossy(&raw).into_owned(),
                    kind: other.as_byte(),
                })
            }
        }
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let (Ok(key), value) = (ext.key(), ext.value_bytes()) {
                    if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                        // overlayfs' own xattrs (opaque, redirect, metacopy...) from an
                        // image could steer the overlay; only the unpacker sets those.
                        if attr.starts_with("trusted.overlay.") || attr.starts_with("user.overlay.")
                        {
                            continue;
                        }
                        set_xattr(&path, attr, value).map_err(self.io("set xattr on", &path))?;
                    }
                }
            }
        }
        let created = match &file {
            Some(f) => Some(f.metadata().map_err(self.io("stat", &path))?),
            None => None,
        };
        let chown = match (&file, &created) {
            (Some(_), Some(m)) if m.uid() == uid && m.gid() == gid => Ok(()),
            (Some(f), _) => nix::unistd::fchown(
                f.as_raw_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            ),
            _ => nix::unistd::fchownat(
                None,
                &path,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
        };
        chown.map_err(|e| match e {
            // Rootless: the id is not mapped in the user's namespace.
            nix::errno::Errno::EINVAL if crate::rootless::active() => Error::UnmappedId {
                layer: self.layer.clone(),
                entry: String::from_utf8_lossy(&raw).into_owned(),
                uid,
                gid,
            },
            e => self.io("chown", &path)(e.into()),
        })?;
        if let (Some(f), Some(m)) = (&file, &created) {
            // chown clears set-id bits, so the mode comes after it.
            if m.permissions().mode() & 0o7777 != mode || m.uid() != uid || m.gid() != gid {
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod", &path))?;
            }
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(f.as_raw_fd(), &t, &t)
                .map_err(|e| self.io("set mtime on", &path)(e.into()))?;
        } else {
            if kind != tar::EntryType::Symlink {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(self.io("chmod", &path))?;
            }
            if kind != tar::EntryType::Directory {
                set_mtime(&path, mtime).map_err(self.io("set mtime on", &path))?;
            }
        }
        self.written.insert(path);
        Ok(())
    }
}

fn device(header: &tar::Header) -> u64 {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    nix::sys::stat::makedev(major.into(), minor.into())
}

/// Whether a relative symlink target, placed `depth` directories below the
/// root, climbs above the root.
fn escapes(depth: usize, target: &[u8]) -> bool {
    let mut level = depth as isize;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return true;
                }
            }
            _ => level += 1,
        }
    }
    false
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    sys::fs::lsetxattr(&cstr(path), &n, value)
}

fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(io::Error::from)
}

/// Unpacks one layer stream into `dest`, verifying its diff_id.
/// On error `dest` may hold a partial tree; callers own its removal.
pub fn unpack_into(blob: impl Read, dest: &Path, diff_id: &Digest, mode: Whiteouts) -> Result<()> {
    let io_err = |action, source| Error::Io {
        layer: diff_id.clone(),
        action,
        path: dest.to_owned(),
        source,
    };
    let stream = decompress(blob).map_err(|e| io_err("decompress", e))?;
    let hashing = HashingReader::new(stream, diff_id.algorithm());
    let mut archive = tar::Archive::new(hashing);
    let mut unpacker = Unpacker {
        dest,
        layer: diff_id,
        mode,
        written: HashSet::new(),
        dir_times: Vec::new(),
        dirs: HashSet::new(),
    };
    for entry in archive.entries().map_err(|e| io_err("read archive", e))? {
        let entry = entry.map_err(|e| io_err("read archive", e))?;
        unpacker.entry(entry)?;
    }
    for (dir, mtime) in unpacker.dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(|e| io_err("set mtime", e))?;
    }
    let (actual, _) = archive
        .into_inner()
        .finish()
        .map_err(|e| io_err("read archive", e))?;
    if &actual != diff_id {
        return Err(Error::DiffIdMismatch {
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_symlink_escape_detection() {
        assert!(!escapes(0, b"bin/busybox"));
        assert!(!escapes(1, b"../lib/x"));
        assert!(escapes(1, b"../../etc/passwd"));
        assert!(escapes(0, b".."));
        assert!(!escapes(2, b"a/../../b"));
    }

    /// A one-entry tar archive holding an empty file named `name`.
    fn tar_with(name: &str) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(0);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[0; 1024]);
        tar
    }

    /// Found writing the `unpack` fuzz target (its harness catches it):
    /// `.wh...` hid `..`, so unpacking it deleted the directory above the
    /// layer, and `.wh..` or `.wh.` the layer itself.
    #[test]
    fn whiteout_of_dot_or_dotdot_is_refused_and_deletes_nothing() {
        let diff_id = crate::image::digest::sha256_of(b"");
        for name in [".wh...", "a/.wh...", ".wh..", "a/.wh..", ".wh."] {
            for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
                let tmp = tempfile::tempdir().unwrap();
                let layer = tmp.path().join("layer");
                fs::create_dir_all(layer.join("a")).unwrap();
                fs::write(tmp.path().join("neighbour"), b"x").unwrap();
                let r = unpack_into(&tar_with(name)[..], &layer, &diff_id, mode);
                assert!(
                    matches!(r, Err(Error::PathTraversal { .. })),
                    "{name} {mode:?}: {r:?}"
                );
                assert!(tmp.path().join("neighbour").is_file(), "{name} {mode:?}");
                assert!(layer.join("a").is_dir(), "{name} {mode:?}");
            }
        }
    }
}
