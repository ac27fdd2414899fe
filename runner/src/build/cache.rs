//! The step cache: a step key (a digest chained from the parent's key, the
//! instruction after expansion, the build args it sees and, for COPY/ADD,
//! the content summary of its sources) -> what the step made: a layer
//! (blob digest = diff_id, size) or nothing. Records are small JSON files
//! under `<root>/build/cache/`; the layers themselves are blobs of the
//! image store, so a record whose blob is gone is a miss.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use crate::image::digest::Digest;
use crate::paths::Root;

/// What a cached step made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The layer: digest (= diff_id) and size; `None` for no layer.
    pub layer: Option<(Digest, u64)>,
    /// When the step ran (its history time), so that a fully cached
    /// rebuild makes the same image as the build before, as Docker's do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The build that wrote it (a `--no-cache` build takes only its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Record {
    /// The record of a step that ran now and made `layer`.
    pub fn made(layer: Option<(Digest, u64)>) -> Record {
        Record {
            layer,
            created: Some(super::config::created()),
            session: None,
        }
    }
}

/// Chains `parts` onto `parent` into a new key.
pub fn key(parent: &Digest, parts: &[&str]) -> Digest {
    let text = serde_json::to_string(&(parent.to_string(), parts)).expect("strings serialize");
    crate::image::digest::sha256_of(text.as_bytes())
}

/// The record for `key`, if any. A record written before records had
/// times is given one now, and written back, so later rebuilds agree.
pub fn get(root: &Root, key: &Digest) -> Option<Record> {
    let bytes = fs::read(root.build_cache(key)).ok()?;
    let mut record: Record = serde_json::from_slice(&bytes).ok()?;
    if record.created.is_none() {
        record.created = Record::made(None).created;
        let _ = put(root, key, &record);
    }
    Some(record)
}

/// Records what step `key` made.
pub fn put(root: &Root, key: &Digest, record: &Record) -> io::Result<()> {
    let path = root.build_cache(key);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    // Not synced: a record a crash loses or truncates is only a cache miss.
    crate::fsutil::write_replace(&path, &serde_json::to_vec(record)?, false)
}

/// Every layer digest the cache names (kept by `runner prune` only while the store has them).
pub fn layers(root: &Root) -> Vec<Digest> {
    let dir = root.dir().join("build/cache");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Record>(&b).ok())
        .filter_map(|r| r.layer.map(|(d, _)| d))
        .collect()
}

/// Removes every record and the stat caches; returns how many records went.
pub fn remove_all(root: &Root) -> io::Result<usize> {
    let dir = root.dir().join("build/cache");
    let n = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    for sub in ["build/cache", "build/stat", "build/urls"] {
        match fs::remove_dir_all(root.dir().join(sub)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(n)
}

/// Removes the records whose layer `exists` says is gone; returns how many.
pub fn remove_dangling(root: &Root, exists: impl Fn(&Digest) -> bool) -> usize {
    let dir = root.dir().join("build/cache");
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let record = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
        let gone = match record {
            Some(Record {
                layer: Some((d, _)),
                ..
            }) => !exists(&d),
            Some(_) => false,
            None => true,
        };
        if gone && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}
