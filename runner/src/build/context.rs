//! The build context: the directory tree a build may copy from, after
//! `.dockerignore`, listed once (lstat only), with file contents hashed on
//! demand through a stat cache: a file whose size, mtime, ctime and inode
//! are those recorded is not read again (git's index does the same).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ignore::Ignore;
use crate::image::digest::{Algorithm, Digest};

/// One context entry (lstat of it).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its metadata.
    pub meta: fs::Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
    ino: u64,
    sha256: String,
}

impl Stat {
    fn matches(&self, m: &fs::Metadata) -> bool {
        self.size == m.len()
            && self.mtime == m.mtime()
            && self.mtime_ns == m.mtime_nsec()
            && self.ctime == m.ctime()
            && self.ctime_ns == m.ctime_nsec()
            && self.ino == m.ino()
    }
}

/// A listed context.
#[derive(Debug)]
pub struct Context {
    dir: PathBuf,
    /// Relative path (`a/b`) -> entry, sorted; directories included.
    pub entries: BTreeMap<String, Entry>,
    stats: HashMap<String, Stat>,
    cache_file: PathBuf,
    dirty: bool,
    /// Files read (not found in the stat cache) in this build.
    pub hashed: usize,
    /// The paths `.dockerignore` left out (the topmost of each subtree).
    pub excluded: Vec<String>,
}

impl Context {
    /// Lists `dir` without what `ignore` excludes; `cache_file` holds the stat cache.
    pub fn open(dir: &Path, ignore: &Ignore, cache_file: PathBuf) -> io::Result<Context> {
        let mut entries = BTreeMap::new();
        let mut excluded = Vec::new();
        walk(dir, "", ignore, &mut entries, &mut excluded)?;
        let stats = fs::read(&cache_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Context {
            dir: dir.to_owned(),
            entries,
            stats,
            cache_file,
            dirty: false,
            hashed: 0,
            excluded,
        })
    }

    /// The absolute path of context path `rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        }
    }

    /// The SHA-256 of regular file `rel`, from the stat cache when it is fresh.
    /// The file is the one listed: a file swapped for another (or for a
    /// symlink) since is refused, not read ([`crate::fsutil::open_same`]).
    pub fn digest(&mut self, rel: &str) -> io::Result<String> {
        let meta = match self.entries.get(rel) {
            Some(e) => e.meta.clone(),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "not in the context",
                ))
            }
        };
        if let Some(s) = self.stats.get(rel).filter(|s| s.matches(&meta)) {
            return Ok(s.sha256.clone());
        }
        let mut hasher = Algorithm::Sha256.hasher();
        let mut f = crate::fsutil::open_same(&self.path(rel), (meta.dev(), meta.ino()), false)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let d: Digest = hasher.finish();
        self.hashed += 1;
        self.stats.insert(
            rel.to_owned(),
            Stat {
                size: meta.len(),
                mtime: meta.mtime(),
                mtime_ns: meta.mtime_nsec(),
                ctime: meta.ctime(),
                ctime_ns: meta.ctime_nsec(),
                ino: meta.ino(),
                sha256: d.hex().to_owned(),
            },
        );
        self.dirty = true;
        Ok(d.hex().to_owned())
    }

    /// Writes the stat cache back if it changed (entries of files gone are dropped).
    pub fn save(&self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let live: HashMap<&String, &Stat> = self
            .stats
            .iter()
            .filter(|(k, _)| self.entries.contains_key(*k))
            .collect();
        if let Some(parent) = self.cache_file.parent() {
            fs::create_dir_all(parent)?;
        }
        // Not synced: a stat cache a crash loses only means hashing again,
        // and any version of it maps stats to the content they had.
        crate::fsutil::write_replace(&self.cache_file, &serde_json::to_vec(&live)?, false)
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    ignore: &Ignore,
    out: &mut BTreeMap<String, Entry>,
    excluded_out: &mut Vec<String>,
) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let meta = e.metadata()?;
        let excluded = ignore.excluded(&rel);
        if meta.is_dir() && (!excluded || ignore.may_reinclude_under(&rel)) {
            walk(&e.path(), &format!("{rel}/"), ignore, out, excluded_out)?;
        }
        if !excluded {
            out.insert(rel, Entry { meta });
        } else {
            excluded_out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::copy::{self, Sources, Src};
    use crate::build::view::LayerView;

    /// A hostile owner of the context swaps a listed file for a symlink to a
    /// secret (or moves a directory on its path) after the build listed it:
    /// hashing and writing the layer refuse it instead of reading the secret.
    #[test]
    fn a_file_swapped_after_listing_is_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let ctx_dir = dir.path().join("ctx");
        fs::create_dir_all(ctx_dir.join("d")).unwrap();
        fs::write(ctx_dir.join("a.txt"), "harmless").unwrap();
        fs::write(ctx_dir.join("d/b.txt"), "harmless").unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "host secret").unwrap();
        let mut ctx = Context::open(&ctx_dir, &Ignore::default(), dir.path().join("stat")).unwrap();
        // Swapped before hashing: a symlink in its place.
        fs::remove_file(ctx_dir.join("a.txt")).unwrap();
        std::os::unix::fs::symlink(&secret, ctx_dir.join("a.txt")).unwrap();
        let e = ctx.digest("a.txt").unwrap_err();
        assert!(e.to_string().contains("changed after it was listed"), "{e}");
        // A directory on the path moved away and a symlink put there.
        fs::rename(ctx_dir.join("d"), dir.path().join("d-moved")).unwrap();
        fs::create_dir(dir.path().join("evil")).unwrap();
        fs::copy(&secret, dir.path().join("evil/b.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("evil"), ctx_dir.join("d")).unwrap();
        let e = ctx.digest("d/b.txt").unwrap_err();
        assert!(e.to_string().contains("changed after it was listed"), "{e}");

        // Swapped after planning, before the layer is written.
        fs::remove_file(ctx_dir.join("a.txt")).unwrap();
        fs::write(ctx_dir.join("a.txt"), "harmless").unwrap();
        let mut ctx = Context::open(&ctx_dir, &Ignore::default(), dir.path().join("stat")).unwrap();
        let plan = copy::plan(
            &mut Sources::Context(&mut ctx),
            &[Src::Path("a.txt".into())],
            "/x",
            &LayerView::new(Vec::new()),
            &copy::Options::default(),
        )
        .unwrap();
        fs::remove_file(ctx_dir.join("a.txt")).unwrap();
        fs::hard_link(&secret, ctx_dir.join("a.txt")).unwrap();
        let e = copy::write(&plan, &dir.path().join("layer.tar")).unwrap_err();
        assert!(e.to_string().contains("changed after it was listed"), "{e}");
    }
}
