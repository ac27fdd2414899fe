//! ADD's local archives: a tar (plain, gzip or zstd, detected from its
//! bytes as the layer unpacker does) is extracted into the destination
//! rather than copied. Entries keep their archive owners, modes and mtimes;
//! paths are cleaned and cannot climb out of the destination. bzip2 and xz
//! archives are not recognised (copied as files).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path};

use super::copy::Data;
use super::layer::{Kind, Meta};

/// The entries of archive `path` placed under `dest` (layer-relative), or
/// `None` if `path` is not a tar archive.
pub fn entries(path: &Path, dest: &str) -> io::Result<Option<Vec<(Meta, Data)>>> {
    let reader = crate::image::unpack::decompress(File::open(path)?)?;
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

fn entry_link(h: &tar::Header) -> io::Result<Option<String>> {
    Ok(h.link_name()?.map(|p| p.to_string_lossy().into_owned()))
}
