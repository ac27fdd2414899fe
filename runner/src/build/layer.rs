//! Writing a layer: an uncompressed tar, hashed as it is written (its digest
//! is both the blob digest and the diff_id), with reproducible headers:
//! entries in the order given (callers sort them), no user or group names,
//! and with `SOURCE_DATE_EPOCH` every mtime clamped to it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use crate::image::digest::{Algorithm, Digest};

/// The media type of the layers the builder writes.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// What one tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
    /// A hard link to this earlier entry (path in the layer).
    Hardlink(String),
    /// A character device.
    Char(u32, u32),
    /// A block device.
    Block(u32, u32),
    /// A FIFO.
    Fifo,
}

/// The header of one tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Path inside the layer, relative (`etc/passwd`).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits, set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (name, value).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Bytes go to the spooler's thread in pieces of this size.
const SPOOL_CHUNK: usize = 1 << 20;
/// The spooler starts write-back of the layer file every this many bytes,
/// while the tar is still being made.
const WRITE_BACK: u64 = 2 << 20;
/// Pieces queued for the spooler's thread.
const SPOOL_DEPTH: usize = 4;

/// Hashes a layer's bytes and writes them to its file on a thread of its
/// own, so reading the sources and making the tar headers (this thread)
/// overlap with the hash and the page-cache copy (that one).
struct Spooler {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    /// Pieces the thread is done with, to fill again (fresh ones would
    /// each cost a megabyte of page faults).
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<io::Result<(Digest, u64)>>>,
}

impl Spooler {
    fn start(mut file: File) -> Spooler {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(SPOOL_DEPTH);
        let (spent_tx, spent) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut hasher = Algorithm::Sha256.hasher();
            let mut len = 0u64;
            let mut flushed = 0u64;
            for mut piece in rx {
                hasher.update(&piece);
                file.write_all(&piece)?;
                len += piece.len() as u64;
                if len - flushed >= WRITE_BACK {
                    // The store's fsync then only waits for the tail. A
                    // failure only leaves more for that fsync to do.
                    let _ = crate::sys::fs::start_write_back(&file, flushed, len - flushed);
                    flushed = len;
                }
                piece.clear();
                let _ = spent_tx.send(piece);
            }
            Ok((hasher.finish(), len))
        });
        Spooler {
            buf: Vec::with_capacity(SPOOL_CHUNK),
            tx: Some(tx),
            spent,
            thread: Some(thread),
        }
    }

    /// Hands the buffered bytes to the thread; its error if it stopped.
    fn send(&mut self) -> io::Result<()> {
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(SPOOL_CHUNK));
        let piece = std::mem::replace(&mut self.buf, next);
        let sent = self.tx.as_ref().map(|tx| tx.send(piece).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        self.join()
            .and(Err(io::Error::other("the layer writer stopped")))
    }

    /// The digest and length of everything written.
    fn finish(mut self) -> io::Result<(Digest, u64)> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<(Digest, u64)> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(done)) => done,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(io::Error::other("the layer writer stopped")),
        }
    }
}

impl Write for Spooler {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPOOL_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Spooler {
    /// An abandoned layer: its thread stops before the file is removed.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// A layer tar being written to a file.
pub struct LayerWriter {
    tar: tar::Builder<Spooler>,
    path: PathBuf,
    clamp: Option<i64>,
    entries: usize,
}

/// A finished layer file.
#[derive(Debug)]
pub struct Written {
    /// The file (moved into the store by the caller).
    pub path: PathBuf,
    /// Its digest (= diff_id: it is not compressed).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// How many entries it has.
    pub entries: usize,
}

/// `SOURCE_DATE_EPOCH`, if set to a number.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

impl LayerWriter {
    /// Starts a layer at `path` (created).
    pub fn create(path: &Path) -> io::Result<LayerWriter> {
        let file = File::create(path)?;
        let mut tar = tar::Builder::new(Spooler::start(file));
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(LayerWriter {
            tar,
            path: path.to_owned(),
            clamp: source_date_epoch(),
            entries: 0,
        })
    }

    /// Adds one entry; `data` gives a regular file's bytes.
    pub fn add(&mut self, meta: &Meta, data: Option<&mut dyn Read>) -> io::Result<()> {
        if !meta.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = meta
                .xattrs
                .iter()
                .map(|(n, v)| (format!("SCHILY.xattr.{n}"), v.as_slice()))
                .collect();
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(meta.uid.into());
        h.set_gid(meta.gid.into());
        let mtime = match self.clamp {
            Some(c) => meta.mtime.min(c),
            None => meta.mtime,
        };
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        let mut path = meta.path.clone();
        self.entries += 1;
        match &meta.kind {
            Kind::File(size) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
                let mut empty = io::empty();
                let data: &mut dyn Read = match data {
                    Some(d) => d,
                    None => &mut empty,
                };
                return self.tar.append_data(&mut h, &path, data.take(*size));
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                if !path.ends_with('/') {
                    path.push('/');
                }
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                return self.tar.append_link(&mut h, &path, target);
            }
            Kind::Hardlink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                return self.tar.append_link(&mut h, &path, target);
            }
            Kind::Char(major, minor) | Kind::Block(major, minor) => {
                h.set_entry_type(if matches!(meta.kind, Kind::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(*major)?;
                h.set_device_minor(*minor)?;
            }
            Kind::Fifo => h.set_entry_type(tar::EntryType::Fifo),
        }
        self.tar.append_data(&mut h, &path, io::empty())
    }

    /// Finishes the archive.
    pub fn finish(self) -> io::Result<Written> {
        let (digest, size) = self.tar.into_inner()?.finish()?;
        Ok(Written {
            path: self.path,
            digest,
            size,
            entries: self.entries,
        })
    }
}
