//! Where a COPY's entries come from: globs over a stage's or image's
//! layers, `--parents`' kept directories, and the walk of a directory
//! source in a layer view.

use std::fs;
use std::path::{Path, PathBuf};

use super::{add, clean_source, glob, Plan, PlanError, Sources};
use crate::build::view::LayerView;

/// The paths in `view` that the relative pattern `pat` matches, one path
/// element at a time, sorted.
pub(super) fn view_glob(view: &LayerView, pat: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for part in pat.split('/') {
        let mut next = Vec::new();
        for base in &found {
            let names = view.read_dir(Path::new(if base.is_empty() { "." } else { base }));
            for name in names.keys() {
                if glob(part.as_bytes(), name.as_bytes()) {
                    next.push(if base.is_empty() {
                        name.clone()
                    } else {
                        format!("{base}/{name}")
                    });
                }
            }
        }
        found = next;
    }
    found
}

/// How many leading elements of source `p` `--parents` drops: those
/// before a `/./` pivot (none without one).
pub(super) fn pivot(p: &str) -> usize {
    match p.find("/./") {
        Some(at) => {
            clean_source(&p[..at]).map_or(0, |c| c.split('/').filter(|s| !s.is_empty()).count())
        }
        None => 0,
    }
}

/// `--parents`: the source directories above `rel` that `kept` keeps,
/// added under `dest_rel` with their own metadata (once each).
#[allow(clippy::too_many_arguments)]
pub(super) fn add_parents(
    plan: &mut Plan,
    sources: &mut Sources<'_>,
    dest_rel: &str,
    rel: &str,
    kept: &str,
    uid: u32,
    gid: u32,
    chmod: Option<u32>,
) -> Result<(), PlanError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let kept_n = kept.split('/').filter(|p| !p.is_empty()).count();
    for n in (parts.len() - kept_n + 1)..parts.len() {
        let src_dir = parts[..n].join("/");
        let to_rel = parts[parts.len() - kept_n..n].join("/");
        let to = if dest_rel.is_empty() {
            to_rel
        } else {
            format!("{dest_rel}/{to_rel}")
        };
        if plan.entries.contains_key(&to) {
            continue;
        }
        let (real, meta) = match sources {
            Sources::Context(ctx) => {
                let real = ctx.path(&src_dir);
                let meta = fs::symlink_metadata(&real).map_err(|e| format!("{src_dir}: {e}"))?;
                (real, meta)
            }
            Sources::View(view) => view
                .lookup(Path::new(&src_dir))
                .ok_or_else(|| format!("{src_dir}: not found"))?,
        };
        add(
            plan,
            sources,
            to,
            &real,
            &meta,
            (uid, gid),
            chmod,
            &src_dir,
            "",
        )?;
    }
    Ok(())
}

pub(super) fn walk_view(
    view: &LayerView,
    rel: &str,
    sub: &str,
    out: &mut Vec<(String, PathBuf, fs::Metadata)>,
) {
    let here = if sub.is_empty() {
        rel.to_owned()
    } else {
        format!("{rel}/{sub}")
    };
    for (name, path) in view.read_dir(Path::new(&here)) {
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        let s = if sub.is_empty() {
            name.clone()
        } else {
            format!("{sub}/{name}")
        };
        let is_dir = m.is_dir();
        out.push((s.clone(), path, m));
        if is_dir {
            walk_view(view, rel, &s, out);
        }
    }
}
