//! Writing a layer: an uncompressed tar, hashed as it is written (its digest
//! is both the blob digest and the diff_id), with reproducible headers:
//! entries in the order given (callers sort them), no user or group names,
//! and with `SOURCE_DATE_EPOCH` every mtime clamped to it.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::image::digest::{Algorithm, Digest, Hasher};

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

struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer tar being written to a file.
pub struct LayerWriter {
    tar: tar::Builder<HashingWriter<BufWriter<File>>>,
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
        let mut tar = tar::Builder::new(HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Algorithm::Sha256.hasher(),
            len: 0,
        });
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
        let mut w = self.tar.into_inner()?;
        w.flush()?;
        Ok(Written {
            path: self.path,
            digest: w.hasher.finish(),
            size: w.len,
            entries: self.entries,
        })
    }
}
