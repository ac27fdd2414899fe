//! COPY and ADD: what goes into the layer, planned from the sources before
//! anything is written, so that the plan's summary (names, kinds, modes,
//! owners, content digests; never mtimes) is the content part of the cache
//! key, and the layer is only written on a cache miss.
//!
//! Rules (Docker's): sources are relative to the context and cannot leave
//! it; a directory copies its contents; `*`, `?`, `[...]` match within one
//! path element; several sources, or a destination ending in `/`, need a
//! directory destination; a relative destination joins WORKDIR; parent
//! directories the image lacks are created (0755); owners are 0:0 unless
//! `--chown`; `--chmod` sets every copied entry's mode; `--exclude` leaves
//! out what its patterns match.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::context::Context;
use super::ignore::{glob, has_glob, Ignore};
use super::layer::{Kind, LayerWriter, Meta, Written};
use super::view::LayerView;

mod sources;
use sources::{add_parents, pivot, view_glob, walk_view};

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Data {
    /// Nothing (not a regular file).
    None,
    /// A file on disk and, when someone else could swap it, the (device,
    /// inode) it had when listed ([`crate::fsutil::open_same`]).
    File(PathBuf, Option<(u64, u64)>),
    /// Bytes in memory (a heredoc).
    Bytes(Vec<u8>),
}

/// A COPY's sources.
pub enum Sources<'a> {
    /// The build context.
    Context(&'a mut Context),
    /// Another stage's or an image's filesystem.
    View(&'a LayerView),
}

/// One source as given: a path, or a heredoc's (name, content).
pub enum Src {
    /// A path.
    Path(String),
    /// A heredoc: file name and content.
    Heredoc(String, Vec<u8>),
    /// A fetched URL (`ADD <url>`) and the file holding its body.
    Url(super::fetch::Fetched, PathBuf),
}

/// The plan: layer path -> (header, data).
#[derive(Debug, Default)]
pub struct Plan {
    /// Entries by layer path (sorted).
    pub entries: BTreeMap<String, (Meta, Data)>,
    /// Summary for the cache key: one line per entry.
    pub summary: Vec<String>,
}

/// A COPY's flags that shape its plan.
#[derive(Debug, Default)]
pub struct Options {
    /// `--chown`, resolved.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// ADD: extract local tars.
    pub extract: bool,
    /// `--exclude` patterns (`.dockerignore`'s syntax), matched against
    /// paths relative to each source: a directory source's entries, or a
    /// file source's own name.
    pub exclude: Ignore,
    /// `--parents`: each source keeps its parent directories under the
    /// destination (those after a `/./` in the source, if it has one).
    pub parents: bool,
    /// The copies keep their sources' owners instead of 0:0 (what a mount
    /// `from=` a stage or an image shows, as BuildKit mounts it).
    pub keep_owners: bool,
}

/// What went wrong planning a COPY (the caller adds file and line).
pub type PlanError = String;

/// Cleans a context-relative source: `None` if it leaves the context.
pub fn clean_source(src: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

/// Plans a COPY of `srcs` to `dest` (absolute, as written after WORKDIR
/// joining; a trailing `/` kept) over the image `target`.
pub fn plan(
    sources: &mut Sources<'_>,
    srcs: &[Src],
    dest: &str,
    target: &LayerView,
    opts: &Options,
) -> Result<Plan, PlanError> {
    let Options {
        owner,
        chmod,
        extract,
        exclude,
        parents,
        keep_owners,
    } = opts;
    let (owner, chmod, extract) = (*owner, *chmod, *extract);
    let (uid, gid) = owner.unwrap_or((0, 0));
    let owner_of = |m: &fs::Metadata| match keep_owners {
        true => (m.uid(), m.gid()),
        false => (uid, gid),
    };
    // Resolve every source to (relative path, is_dir) lists first.
    let mut resolved: Vec<(Option<String>, Vec<String>)> = Vec::new();
    // Per source: how many leading path elements `--parents` drops.
    let mut pivots: Vec<usize> = Vec::new();
    for src in srcs {
        pivots.push(match src {
            Src::Path(p) => pivot(p),
            _ => 0,
        });
        match src {
            Src::Heredoc(name, _) => resolved.push((None, vec![name.clone()])),
            Src::Url(f, _) => resolved.push((None, vec![f.name.clone()])),
            Src::Path(p) => {
                let rel = match sources {
                    Sources::Context(_) => clean_source(p)
                        .ok_or_else(|| format!("{p}: forbidden path outside the build context"))?,
                    Sources::View(_) => super::view::relative(Path::new(p))
                        .to_string_lossy()
                        .into_owned(),
                };
                let matches = match sources {
                    Sources::Context(ctx) if has_glob(&rel) => {
                        let pat: Vec<&str> = rel.split('/').collect();
                        let m: Vec<String> = ctx
                            .entries
                            .keys()
                            .filter(|k| {
                                let parts: Vec<&str> = k.split('/').collect();
                                parts.len() == pat.len()
                                    && pat
                                        .iter()
                                        .zip(&parts)
                                        .all(|(p, s)| glob(p.as_bytes(), s.as_bytes()))
                            })
                            .cloned()
                            .collect();
                        if m.is_empty() {
                            return Err(format!("{p}: no source files were specified (nothing in the build context matches)"));
                        }
                        m
                    }
                    Sources::Context(ctx) => {
                        if !rel.is_empty() && !ctx.entries.contains_key(&rel) {
                            let why = if ctx.path(&rel).symlink_metadata().is_ok() {
                                "excluded by .dockerignore"
                            } else {
                                "not found in the build context"
                            };
                            return Err(format!("{p}: {why}"));
                        }
                        vec![rel]
                    }
                    Sources::View(view) if has_glob(&rel) => {
                        let m = view_glob(view, &rel);
                        if m.is_empty() {
                            return Err(format!(
                                "{p}: no source files were specified (nothing matches)"
                            ));
                        }
                        m
                    }
                    Sources::View(view) => {
                        if view.lookup(Path::new(&rel)).is_none() {
                            return Err(format!("{p}: not found"));
                        }
                        vec![rel]
                    }
                };
                resolved.push((Some(p.clone()), matches));
            }
        }
    }
    let count: usize = resolved.iter().map(|(_, m)| m.len()).sum();
    let dest_exists_dir = target
        .lookup(Path::new(dest))
        .is_some_and(|(_, m)| m.is_dir());
    let dest_is_dir = dest.ends_with('/') || dest_exists_dir || count > 1;
    if count > 1 && !dest.ends_with('/') && !dest_exists_dir {
        return Err(format!("when using COPY with more than one source file, the destination must be a directory and end with a /: {dest}"));
    }
    let dest_rel = super::view::relative(Path::new(dest))
        .to_string_lossy()
        .into_owned();
    let mut plan = Plan::default();
    let join = |base: &str, name: &str| {
        if base.is_empty() {
            name.to_owned()
        } else if name.is_empty() {
            base.to_owned()
        } else {
            format!("{base}/{name}")
        }
    };
    // Where one source file goes: into the destination directory under its
    // own name, or the destination itself.
    let file_dest = |rel: &str| {
        if dest_is_dir {
            join(&dest_rel, rel.rsplit('/').next().unwrap_or(rel))
        } else {
            dest_rel.clone()
        }
    };
    let dir_meta = |path: String| Meta {
        path,
        kind: Kind::Dir,
        mode: chmod.unwrap_or(0o755),
        uid,
        gid,
        mtime: 0,
        xattrs: Vec::new(),
    };
    for (((_, matches), src), pivot) in resolved.iter().zip(srcs).zip(pivots) {
        if let Src::Heredoc(name, bytes) = src {
            let path = if dest_is_dir {
                join(&dest_rel, name)
            } else {
                dest_rel.clone()
            };
            let meta = Meta {
                path: path.clone(),
                kind: Kind::File(bytes.len() as u64),
                mode: chmod.unwrap_or(0o644),
                uid,
                gid,
                mtime: super::layer::source_date_epoch().unwrap_or(0),
                xattrs: Vec::new(),
            };
            plan.summary.push(format!(
                "{path} f {:o} {uid}:{gid} {}",
                meta.mode,
                crate::image::digest::sha256_of(bytes)
            ));
            plan.entries
                .insert(path, (meta, Data::Bytes(bytes.clone())));
            continue;
        }
        if let Src::Url(f, file) = src {
            let path = if dest_is_dir {
                join(&dest_rel, &f.name)
            } else {
                dest_rel.clone()
            };
            // Docker: a URL's file is 0600 unless --chmod.
            let meta = Meta {
                path: path.clone(),
                kind: Kind::File(f.size),
                mode: chmod.unwrap_or(0o600),
                uid,
                gid,
                mtime: f.mtime,
                xattrs: Vec::new(),
            };
            plan.summary
                .push(format!("{path} f {:o} {uid}:{gid} {}", meta.mode, f.digest));
            plan.entries
                .insert(path, (meta, Data::File(file.clone(), None)));
            continue;
        }
        for rel in matches {
            // With --parents, where `rel` goes under the destination.
            let kept = parents.then(|| {
                let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
                parts[pivot.min(parts.len())..].join("/")
            });
            if let Some(kept) = &kept {
                add_parents(&mut plan, sources, &dest_rel, rel, kept, uid, gid, chmod)?;
            }
            let (real, meta) = match sources {
                Sources::Context(ctx) => {
                    let real = ctx.path(rel);
                    // As listed: what is there now may have been swapped.
                    let meta = match ctx.entries.get(rel.as_str()) {
                        Some(e) => e.meta.clone(),
                        None => fs::symlink_metadata(&real).map_err(|e| format!("{rel}: {e}"))?,
                    };
                    (real, meta)
                }
                Sources::View(view) => view
                    .lookup(Path::new(rel))
                    .ok_or_else(|| format!("{rel}: not found"))?,
            };
            if !meta.is_dir() && exclude.excluded(rel.rsplit('/').next().unwrap_or(rel)) {
                continue;
            }
            if meta.is_dir() {
                // The directory's contents go to the destination.
                let below: Vec<(String, PathBuf, fs::Metadata)> = match sources {
                    Sources::Context(ctx) => {
                        let prefix = if rel.is_empty() {
                            String::new()
                        } else {
                            format!("{rel}/")
                        };
                        ctx.entries
                            .iter()
                            .filter(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, e)| {
                                (k[prefix.len()..].to_owned(), ctx.path(k), e.meta.clone())
                            })
                            .collect()
                    }
                    Sources::View(view) => {
                        let mut out = Vec::new();
                        walk_view(view, rel, "", &mut out);
                        out
                    }
                };
                let base = match &kept {
                    Some(k) => join(&dest_rel, k),
                    None => dest_rel.clone(),
                };
                if kept.as_ref().is_some_and(|k| !k.is_empty()) {
                    add(
                        &mut plan,
                        sources,
                        base.clone(),
                        &real,
                        &meta,
                        owner_of(&meta),
                        chmod,
                        rel,
                        "",
                    )?;
                } else if target.lookup(Path::new(&base)).is_none() && !base.is_empty() {
                    plan.entries
                        .insert(base.clone(), (dir_meta(base.clone()), Data::None));
                }
                for (sub, path, m) in below {
                    if exclude.excluded(&sub) {
                        continue;
                    }
                    let to = join(&base, &sub);
                    add(
                        &mut plan,
                        sources,
                        to,
                        &path,
                        &m,
                        owner_of(&m),
                        chmod,
                        rel,
                        &sub,
                    )?;
                }
            } else {
                let archive = if extract && meta.is_file() {
                    crate::fsutil::open_same(&real, (meta.dev(), meta.ino()), false)
                        .and_then(|f| super::archive::entries(f, &dest_rel))
                        .map_err(|e| format!("{rel}: {e}"))?
                } else {
                    None
                };
                match archive {
                    Some(entries) => {
                        let digest = match sources {
                            Sources::Context(ctx) => {
                                ctx.digest(rel).map_err(|e| format!("{rel}: {e}"))?
                            }
                            Sources::View(_) => String::new(),
                        };
                        plan.summary.push(format!(
                            "{dest_rel} archive {rel} {digest} {uid}:{gid} {chmod:?} {owner:?}"
                        ));
                        for (mut m, d) in entries {
                            if let Some((u, g)) = owner {
                                (m.uid, m.gid) = (u, g);
                            }
                            plan.entries.insert(m.path.clone(), (m, d));
                        }
                    }
                    None => {
                        let to = match &kept {
                            Some(k) => join(&dest_rel, k),
                            None => file_dest(rel),
                        };
                        add(
                            &mut plan,
                            sources,
                            to,
                            &real,
                            &meta,
                            owner_of(&meta),
                            chmod,
                            rel,
                            "",
                        )?;
                    }
                }
            }
        }
    }
    // Parent directories the image lacks.
    let paths: Vec<String> = plan.entries.keys().cloned().collect();
    for p in paths {
        let mut parent = Path::new(&p).parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            let ds = d.to_string_lossy().into_owned();
            if plan.entries.contains_key(&ds) || target.lookup(d).is_some() {
                break;
            }
            // As BuildKit: `--chmod` is for the copied entries, not for the
            // directories made to hold them.
            let mut meta = dir_meta(ds.clone());
            meta.mode = 0o755;
            plan.entries.insert(ds, (meta, Data::None));
            parent = d.parent();
        }
    }
    for (path, (meta, _)) in &plan.entries {
        if meta.kind == Kind::Dir {
            plan.summary.push(format!(
                "{path} d {:o} {}:{}",
                meta.mode, meta.uid, meta.gid
            ));
        }
    }
    plan.summary.sort();
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn add(
    plan: &mut Plan,
    sources: &mut Sources<'_>,
    to: String,
    real: &Path,
    meta: &fs::Metadata,
    (uid, gid): (u32, u32),
    chmod: Option<u32>,
    rel: &str,
    sub: &str,
) -> Result<(), PlanError> {
    let ft = meta.file_type();
    let mode = chmod.unwrap_or(meta.mode() & 0o7777);
    let (kind, data, content) = if ft.is_file() {
        let digest = match sources {
            Sources::Context(ctx) => {
                let key = if sub.is_empty() {
                    rel.to_owned()
                } else if rel.is_empty() {
                    sub.to_owned()
                } else {
                    format!("{rel}/{sub}")
                };
                ctx.digest(&key).map_err(|e| format!("{key}: {e}"))?
            }
            // A stage's content is keyed by the stage's own cache key.
            Sources::View(_) => String::new(),
        };
        (
            Kind::File(meta.len()),
            Data::File(real.to_owned(), Some((meta.dev(), meta.ino()))),
            digest,
        )
    } else if ft.is_dir() {
        (Kind::Dir, Data::None, String::new())
    } else if ft.is_symlink() {
        let t = fs::read_link(real).map_err(|e| format!("{}: {e}", real.display()))?;
        let t = t.to_string_lossy().into_owned();
        (Kind::Symlink(t.clone()), Data::None, t)
    } else {
        // Devices, FIFOs and sockets in a context are not copied (BuildKit's
        // copy skips sockets; devices need privileges we do not assume).
        return Ok(());
    };
    let tag = match kind {
        Kind::File(_) => "f",
        Kind::Dir => "d",
        _ => "l",
    };
    if kind != Kind::Dir {
        plan.summary
            .push(format!("{to} {tag} {mode:o} {uid}:{gid} {content}"));
    }
    let m = Meta {
        path: to.clone(),
        kind,
        mode,
        uid,
        gid,
        mtime: meta.mtime(),
        xattrs: Vec::new(),
    };
    plan.entries.insert(to, (m, data));
    Ok(())
}

/// Writes the planned layer to `out`.
pub fn write(plan: &Plan, out: &Path) -> std::io::Result<Written> {
    let mut w = LayerWriter::create(out)?;
    for (meta, data) in plan.entries.values() {
        match data {
            Data::None => w.add(meta, None)?,
            Data::File(p, listed) => {
                let mut f = match listed {
                    Some(id) => crate::fsutil::open_same(p, *id, false)?,
                    None => fs::File::open(p)?,
                };
                w.add(meta, Some(&mut f))?;
            }
            Data::Bytes(b) => w.add(meta, Some(&mut b.as_slice()))?,
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cannot_leave_the_context() {
        assert_eq!(clean_source("./a/../b").as_deref(), Some("b"));
        assert_eq!(clean_source("/x/y").as_deref(), Some("x/y"));
        assert_eq!(clean_source("."), Some(String::new()));
        assert_eq!(clean_source("../etc/passwd"), None);
        assert_eq!(clean_source("a/../../b"), None);
    }
}
