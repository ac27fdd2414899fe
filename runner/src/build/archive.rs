//! ADD's local archives: a tar (plain, gzip, zstd, bzip2 or xz, detected
//! from its bytes as Docker does: gzip and zstd by the layer unpacker's
//! rule, bzip2 and xz here) is extracted into the destination rather than
//! copied. Entries keep their archive owners, modes and mtimes; paths are
//! cleaned and cannot climb out of the destination.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Component;

use super::copy::Data;
use super::layer::{Kind, Meta};

/// The entries of archive `path` placed under `dest` (layer-relative), or
/// `None` if `path` is not a tar archive.
pub fn entries(file: File, dest: &str) -> io::Result<Option<Vec<(Meta, Data)>>> {
    let reader = decompress(file)?;
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    let iter = match archive.entries() {
        Ok(i) => i,
        Err(_) => return Ok(None),
    };
    for (n, entry) in iter.enumerate() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if n == 0 => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = entry.header().clone();
        if n == 0 && header.as_ustar().is_none() && header.as_gnu().is_none() {
            return Ok(None);
        }
        let raw = entry.path()?.into_owned();
        let rel: Vec<String> = raw
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if rel.is_empty() {
            continue;
        }
        let rel = rel.join("/");
        let to = if dest.is_empty() {
            rel
        } else {
            format!("{dest}/{rel}")
        };
        let link = || -> io::Result<String> { Ok(entry_link(&header)?.unwrap_or_default()) };
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File(header.size()?),
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(link()?),
            tar::EntryType::Link => {
                let target = link()?;
                let target = target.trim_start_matches('/');
                Kind::Hardlink(if dest.is_empty() {
                    target.to_owned()
                } else {
                    format!("{dest}/{target}")
                })
            }
            tar::EntryType::Char => Kind::Char(
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            ),
            tar::EntryType::Block => Kind::Block(
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            ),
            tar::EntryType::Fifo => Kind::Fifo,
            _ => continue,
        };
        let mut data = Vec::new();
        if matches!(kind, Kind::File(_)) {
            entry.read_to_end(&mut data)?;
        }
        let meta = Meta {
            path: to,
            kind,
            mode: header.mode()? & 0o7777,
            uid: header.uid()? as u32,
            gid: header.gid()? as u32,
            mtime: header.mtime()? as i64,
            xattrs: Vec::new(),
        };
        let data = if data.is_empty() {
            Data::None
        } else {
            Data::Bytes(data)
        };
        out.push((meta, data));
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// The bytes of `file`, decompressed when they start with the bzip2 or xz
/// magic, else as the layer unpacker reads them (gzip, zstd, plain).
fn decompress(file: File) -> io::Result<Box<dyn Read>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let head = buffered.fill_buf()?;
    if head.starts_with(b"BZh") {
        Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Ok(Box::new(xz2::bufread::XzDecoder::new_multi_decoder(
            buffered,
        )))
    } else {
        crate::image::unpack::decompress(buffered)
    }
}

fn entry_link(h: &tar::Header) -> io::Result<Option<String>> {
    Ok(h.link_name()?.map(|p| p.to_string_lossy().into_owned()))
}
