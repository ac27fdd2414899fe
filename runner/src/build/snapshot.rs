//! The snapshot: a RUN's overlay upper directory turned into a layer tar.
//!
//! Walked in sorted order. A regular file under a directory the layers
//! below do not have (most of what a RUN writes) is not stat'ed by the
//! walk: its reader thread reads its metadata from the open file. A 0:0 character device (overlay's whiteout)
//! becomes an empty `.wh.NAME`; a directory marked opaque gets a
//! `.wh..wh..opq` entry first; files with several links become one file
//! and hard links to it; owners, modes, set-id bits, devices, FIFOs,
//! symlinks and xattrs (but overlay's own `trusted.overlay.*` and `user.overlay.*`) are kept.
//! Left out: files overlay copied up that are byte- and metadata-identical
//! to the layer below (a `chmod` to the same mode, an open for writing
//! that wrote nothing), directories copied up only as parents of such
//! entries, and the mount points the sandbox itself created (`/proc`,
//! `/sys`, `/dev`, `/etc/{hostname,hosts,resolv.conf}`) when the layers
//! below did not have them and they are still empty (and a new `/etc`
//! holding only those).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use super::layer::{Kind, LayerWriter, Meta, Written};
use super::view::{is_opaque, is_whiteout, LayerView};

/// Paths the sandbox creates as mount points.
const MOUNT_POINTS: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// Regular files up to this size are read ahead into memory; larger ones
/// are handed over open.
const SMALL_FILE: u64 = 64 << 10;
/// Entries each reader reads ahead of the tar writer.
const READ_AHEAD: usize = 128;
/// Readers hand entries over this many at a time (one wake-up per batch,
/// not per file).
const BATCH: usize = 32;
/// At most this many reader threads (fewer on fewer cores).
const READERS: usize = 4;

/// Writes the layer for `upper` (over `below`) to `out`. After the walk,
/// reader threads open the files (and read the xattrs and the bytes of the
/// small ones), taking turns, while this one writes the tar in order (and
/// the layer writer's own thread hashes it).
pub fn snapshot(upper: &Path, below: &LayerView, out: &Path) -> io::Result<Written> {
    let mut entries = Vec::new();
    walk(upper, "", Some(below), &mut entries)?;
    let readers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, READERS));
    // The entries in batches; reader r takes batches r, r + readers, ...
    let mut shares: Vec<Vec<Entries>> = (0..readers).map(|_| Vec::new()).collect();
    let mut batches = 0;
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        shares[batches % readers].push(entries.by_ref().take(BATCH).collect());
        batches += 1;
    }
    let mut w = LayerWriter::create(out)?;
    std::thread::scope(|scope| {
        let rxs: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD / BATCH);
                scope.spawn(move || read_ahead(share, tx));
                rx
            })
            .collect();
        // Files with several links become one file and hard links to it,
        // the first in tar order holding the bytes.
        let mut links: HashMap<Inode, String> = HashMap::new();
        // An error returns here, which drops the receivers and so stops the readers.
        let items = (0..batches).flat_map(|b| match rxs[b % readers].recv() {
            Ok(batch) => batch,
            Err(_) => vec![Err(io::Error::other("a snapshot reader stopped"))],
        });
        for item in items {
            let (mut meta, data, inode) = item?;
            if let Some(inode) = inode {
                if let Some(first) = links.get(&inode) {
                    meta.kind = Kind::Hardlink(first.clone());
                    meta.xattrs.clear();
                    w.add(&meta, None)?;
                    continue;
                }
                links.insert(inode, meta.path.clone());
            }
            match data {
                Data::None => w.add(&meta, None)?,
                Data::Bytes(b) => w.add(&meta, Some(&mut b.as_slice()))?,
                Data::File(mut f) => w.add(&meta, Some(&mut f))?,
            }
        }
        Ok::<(), io::Error>(())
    })?;
    w.finish()
}

/// Where an entry's bytes (and, for a new file, its xattrs and metadata) come from.
enum Source {
    /// Nothing to read.
    None,
    /// A regular file; `xattrs`: its xattrs are still to be read; `stat`:
    /// so is its metadata (the entry holds only its path).
    File {
        path: PathBuf,
        xattrs: bool,
        stat: bool,
    },
}

/// A regular file's device and inode, when it has several links.
type Inode = (u64, u64);

/// An entry the walk found: what it is, where its bytes come from, and
/// its inode if it is a regular file with several links.
type Entry = (Meta, Source, Option<Inode>);

/// What a reader hands the tar writer for an entry.
type Item = (Meta, Data, Option<Inode>);

fn inode_of(meta: &fs::Metadata) -> Option<Inode> {
    (meta.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

/// An entry's bytes, as the reader hands them to the tar writer.
enum Data {
    None,
    Bytes(Vec<u8>),
    File(File),
}

/// Opens its batches' files in order and sends each batch on, until the
/// writer stops taking them.
fn read_ahead(batches: Vec<Entries>, tx: SyncSender<Vec<io::Result<Item>>>) {
    for batch in batches {
        let mut items = Vec::with_capacity(batch.len());
        let mut failed = false;
        for (mut meta, source, mut inode) in batch {
            let data = match source {
                Source::None => Ok(Data::None),
                Source::File { path, xattrs, stat } => {
                    open_entry(&mut meta, &path, (xattrs, stat), &mut inode)
                }
            };
            failed = data.is_err();
            items.push(data.map(|d| (meta, d, inode)));
            if failed {
                break;
            }
        }
        if tx.send(items).is_err() || failed {
            return;
        }
    }
}

/// Opens a file for reading without updating its access time (which would
/// dirty every inode the snapshot reads), if the kernel allows it here.
fn open_noatime(path: &Path) -> io::Result<File> {
    let open = |flags| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    match open(libc::O_NOATIME | libc::O_NOFOLLOW) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        other => other,
    }
}

fn open_entry(
    meta: &mut Meta,
    path: &Path,
    (xattrs, stat): (bool, bool),
    inode: &mut Option<Inode>,
) -> io::Result<Data> {
    let mut file = open_noatime(path)?;
    if stat {
        let m = file.metadata()?;
        if !m.is_file() {
            return Err(io::Error::other(format!(
                "{} changed while the layer was made",
                path.display()
            )));
        }
        *meta = plain(std::mem::take(&mut meta.path), &m, Kind::File(m.len()));
        *inode = inode_of(&m);
    }
    if xattrs {
        meta.xattrs = xattrs_from(
            || crate::sys::fs::flistxattr(&file),
            |name| crate::sys::fs::fgetxattr(&file, name),
        )?;
    }
    match meta.kind {
        Kind::File(size) if size <= SMALL_FILE => {
            // Reads `size` bytes and no more (read_to_end would probe for
            // the end with one more read).
            let mut bytes = vec![0u8; size as usize];
            let n = read_full(&mut file, &mut bytes)?;
            bytes.truncate(n);
            Ok(Data::Bytes(bytes))
        }
        _ => Ok(Data::File(file)),
    }
}

type Entries = Vec<Entry>;

/// Walks directory `dir` (layer path `prefix`); returns whether anything
/// under it was added. `below` is `None` under a directory the layers below
/// do not have as a directory: nothing there can have a lower entry.
fn walk(
    dir: &Path,
    prefix: &str,
    below: Option<&LayerView>,
    out: &mut Entries,
) -> io::Result<bool> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name(), e)))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut any = false;
    for (name, dirent) in names {
        let full = dir.join(&name);
        let name = name.to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        // A new regular file (the directory's type says so, without a
        // stat): its reader reads the rest.
        if below.is_none() && dirent.file_type()?.is_file() && !MOUNT_POINTS.contains(&rel.as_str())
        {
            let entry = Meta {
                path: rel,
                kind: Kind::File(0),
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: Vec::new(),
            };
            let source = Source::File {
                path: full,
                xattrs: true,
                stat: true,
            };
            out.push((entry, source, None));
            any = true;
            continue;
        }
        // The metadata through the directory (`fstatat`), not the full path.
        let meta = dirent.metadata()?;
        let lower = below.and_then(|b| b.lookup(Path::new(&rel)));
        if is_whiteout(&meta) {
            // Overlay only whites out what the layers below have.
            if lower.is_some() {
                out.push((
                    plain(format!("{prefix}.wh.{name}"), &meta, Kind::File(0)),
                    Source::None,
                    None,
                ));
                any = true;
            }
            continue;
        }
        if MOUNT_POINTS.contains(&rel.as_str()) && lower.is_none() && is_empty(&full, &meta) {
            continue;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let opaque = is_opaque(&full);
            let changed = opaque
                || match &lower {
                    Some((_, m)) => {
                        !m.is_dir()
                            || !same_header(&meta, m)
                            || xattrs(&full)? != xattrs_of(m, &lower)?
                    }
                    None => true,
                };
            let at = out.len();
            let mut header = header(rel.clone(), &meta, Kind::Dir, &full)?;
            header.xattrs.retain(|(n, _)| !is_overlay_xattr(n));
            out.push((header, Source::None, None));
            if opaque {
                out.push((
                    plain(format!("{rel}/.wh..wh..opq"), &meta, Kind::File(0)),
                    Source::None,
                    None,
                ));
            }
            let lower_dir = below.filter(|_| lower.as_ref().is_some_and(|(_, m)| m.is_dir()));
            let below_any = walk(&full, &format!("{rel}/"), lower_dir, out)?;
            // A new /etc holding only the sandbox's mount points is the sandbox's too.
            if rel == "etc" && lower.is_none() && !below_any && only_mount_points(&full) {
                out.truncate(at);
                continue;
            }
            if !changed && !below_any {
                out.truncate(at);
            } else {
                any = true;
            }
            continue;
        }
        let kind = if ft.is_file() {
            Kind::File(meta.len())
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(&full)?.to_string_lossy().into_owned())
        } else if ft.is_char_device() {
            Kind::Char(major(meta.rdev()), minor(meta.rdev()))
        } else if ft.is_block_device() {
            Kind::Block(major(meta.rdev()), minor(meta.rdev()))
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            // Sockets are not archived (as Docker does).
            continue;
        };
        // A new regular file's xattrs are read from it once it is open for
        // the tar; the rest need theirs now (to compare, or by path).
        let (entry, source) = match &lower {
            None if ft.is_file() => (
                plain(rel, &meta, kind),
                Source::File {
                    path: full,
                    xattrs: true,
                    stat: false,
                },
            ),
            _ => {
                let entry = header(rel, &meta, kind, &full)?;
                if let Some((lpath, lmeta)) = &lower {
                    if unchanged(&entry, &full, &meta, lpath, lmeta)? {
                        continue;
                    }
                }
                let source = match ft.is_file() {
                    true => Source::File {
                        path: full,
                        xattrs: false,
                        stat: false,
                    },
                    false => Source::None,
                };
                (entry, source)
            }
        };
        out.push((entry, source, inode_of(&meta)));
        any = true;
    }
    Ok(any)
}

/// Whether directory `etc` holds nothing but empty mount-point files.
fn only_mount_points(etc: &Path) -> bool {
    fs::read_dir(etc).is_ok_and(|d| {
        d.flatten().all(|e| {
            let name = e.file_name();
            MOUNT_POINTS.contains(&format!("etc/{}", name.to_string_lossy()).as_str())
                && e.metadata().is_ok_and(|m| is_empty(&e.path(), &m))
        })
    })
}

fn is_empty(path: &Path, meta: &fs::Metadata) -> bool {
    if meta.is_dir() {
        fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
    } else {
        meta.is_file() && meta.len() == 0
    }
}

fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

fn plain(path: String, meta: &fs::Metadata, kind: Kind) -> Meta {
    let mode = if matches!(kind, Kind::File(0)) && path.contains(".wh.") {
        0o644
    } else {
        meta.mode() & 0o7777
    };
    Meta {
        path,
        kind,
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs: Vec::new(),
    }
}

fn header(path: String, meta: &fs::Metadata, kind: Kind, full: &Path) -> io::Result<Meta> {
    let mut m = plain(path, meta, kind);
    m.xattrs = xattrs(full)?;
    Ok(m)
}

/// Whether xattr `name` is overlayfs' own (`trusted.overlay.*`, or
/// `user.overlay.*` on an overlay mounted with `userxattr`).
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// The xattrs of `path` the layer carries (not overlay's own).
fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    xattrs_from(
        || crate::sys::fs::llistxattr(&c),
        |name| crate::sys::fs::lgetxattr(&c, name),
    )
}

/// The xattrs the layer carries, from `list` (their names) and `get` (a
/// value), sorted.
fn xattrs_from(
    list: impl FnOnce() -> io::Result<Vec<Vec<u8>>>,
    get: impl Fn(&CStr) -> io::Result<Vec<u8>>,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match list() {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let text = String::from_utf8_lossy(&name).into_owned();
        if is_overlay_xattr(&text) {
            continue;
        }
        let cname = CString::new(name)?;
        if let Ok(v) = get(&cname) {
            out.push((text, v));
        }
    }
    out.sort();
    Ok(out)
}

fn xattrs_of(
    _: &fs::Metadata,
    lower: &Option<(std::path::PathBuf, fs::Metadata)>,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    match lower {
        Some((p, _)) => xattrs(p),
        None => Ok(Vec::new()),
    }
}

fn same_header(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid()
}

/// Whether the upper entry is an unchanged copy-up of the lower one.
fn unchanged(
    entry: &Meta,
    full: &Path,
    meta: &fs::Metadata,
    lpath: &Path,
    lmeta: &fs::Metadata,
) -> io::Result<bool> {
    if !same_header(meta, lmeta) || meta.mtime() != lmeta.mtime() || meta.rdev() != lmeta.rdev() {
        return Ok(false);
    }
    if entry.xattrs != xattrs(lpath)? {
        return Ok(false);
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(fs::read_link(full)? == fs::read_link(lpath)?);
    }
    if ft.is_file() {
        return Ok(meta.len() == lmeta.len() && same_bytes(full, lpath)?);
    }
    Ok(true)
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
