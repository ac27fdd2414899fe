//! A RUN's `--mount`s made ready ([`super::super::mount`] parses them).
//!
//! What a bind mount shows is planned as a COPY of its source would be, so
//! its content summary joins the step's key and `.dockerignore` and the
//! context's bounds hold. On a cache miss a read-only bind of a context
//! directory `.dockerignore` takes nothing from is bound as it is, through
//! a descriptor the sandbox checks is the directory that was listed
//! ([`Volume::listed`]); any other is
//! written to the step's scratch directory and bound from there (read-only,
//! or read-write with the writes thrown away with the scratch dir). Cache mounts live in
//! `<root>/build/mounts/`, each beside a lock file: `shared` takes it
//! shared, `locked` and `private` exclusively (`private` falls back to an
//! empty directory of the step's own when it is busy), and `builder prune`
//! removes only those no step holds. A secret file is written by the
//! sandbox on a tmpfs of the step's own mount namespace
//! ([`crate::spec::SecretFile`]), so it is never on disk. Neither cache
//! mounts' content nor secrets are in the key; a cache mount `from=` a
//! stage, an image or the context starts with the files of its `source`
//! there (planned like a bind, whose summary joins the key) when the
//! cache is first made.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::super::copy::{self, Plan, Sources, Src};
use super::super::mount::{self, Mount, Sharing, Type};
use super::super::parse::Instruction;
use super::super::step::StepDir;
use super::super::view::LayerView;
use super::super::Error;
use super::{Builder, State};
use crate::image::digest::sha256_of;
use crate::image::unpack::{self, Whiteouts};
use crate::paths::Root;
use crate::spec::{SecretFile, Tmpfs, Volume};

/// A mount and, for a bind mount, the plan of what it shows and whether its
/// source is a directory; or, for a read-only bind of a context directory
/// `.dockerignore` takes nothing from, that directory and its (device,
/// inode) as listed, bound as it is.
pub(in crate::build) struct Planned {
    pub mount: Mount,
    bind: Option<(Plan, bool)>,
    direct: Option<(PathBuf, (u64, u64))>,
}

/// What the sandbox gets for a step's mounts; the locks and descriptors it
/// holds last as long as the step.
#[derive(Default)]
pub(in crate::build) struct Ready {
    pub volumes: Vec<Volume>,
    pub tmpfs: Vec<Tmpfs>,
    /// `NAME=secret` for secrets given as variables.
    pub env: Vec<String>,
    pub secrets: Vec<SecretFile>,
    _locks: Vec<Flock<File>>,
}

impl Builder<'_> {
    /// The RUN's mounts, planned, and the part of its key they make: each
    /// mount as written and, for a bind mount, its content summary.
    pub(super) fn plan_mounts(
        &mut self,
        s: usize,
        st: &State,
        i: &Instruction,
    ) -> Result<(Vec<Planned>, String), Error> {
        let workdir = st.image["config"]["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned();
        let mut planned = Vec::new();
        let mut key = String::new();
        for value in i.flag_all("mount") {
            let value = self.word(value, st, i)?;
            let m = mount::parse(&value, &workdir).map_err(|e| self.err(i, e))?;
            key.push_str(&format!("{m:?}\n"));
            let (bind, direct) = match m.kind {
                Type::Bind => {
                    let (plan, is_dir, from_key) = self.plan_bind(s, &m, i)?;
                    key.push_str(&from_key);
                    key.push_str(&plan.summary.join("\n"));
                    let direct = self.direct_bind(&m, is_dir);
                    (Some((plan, is_dir)), direct)
                }
                // A cache mount's seed: what a new cache starts with.
                Type::Cache if m.from.is_some() => {
                    let (plan, is_dir, from_key) = self.plan_bind(s, &m, i)?;
                    if !is_dir {
                        return Err(self.err(
                            i,
                            format!(
                                "--mount=type=cache,from={}: source {:?} is not a directory",
                                m.from.as_deref().unwrap_or_default(),
                                m.source
                            ),
                        ));
                    }
                    key.push_str(&from_key);
                    key.push_str(&plan.summary.join("\n"));
                    (Some((plan, is_dir)), None)
                }
                _ => (None, None),
            };
            planned.push(Planned {
                mount: m,
                bind,
                direct,
            });
        }
        Ok((planned, key))
    }

    fn plan_bind(
        &mut self,
        s: usize,
        m: &Mount,
        i: &Instruction,
    ) -> Result<(Plan, bool, String), Error> {
        let source = if m.source.trim_matches('/').is_empty() {
            ".".to_owned()
        } else {
            m.source.clone()
        };
        let srcs = [Src::Path(source.clone())];
        let empty = LayerView::new(Vec::new());
        let opts = copy::Options {
            keep_owners: m.from.is_some(),
            ..Default::default()
        };
        let plan = |sources: &mut Sources<'_>| copy::plan(sources, &srcs, "/", &empty, &opts);
        match &m.from {
            Some(f) => {
                let (view, key) = self.sources_for_from(f, s, i)?;
                let is_dir = view
                    .lookup(Path::new(source.trim_start_matches('/')))
                    .is_none_or(|(_, meta)| meta.is_dir());
                let p = plan(&mut Sources::View(&view)).map_err(|e| self.err(i, e))?;
                Ok((p, is_dir, key.to_string()))
            }
            None => {
                let ctx = self.context()?;
                let rel = copy::clean_source(&source).unwrap_or_default();
                let is_dir =
                    rel.is_empty() || ctx.entries.get(&rel).is_none_or(|e| e.meta.is_dir());
                let p = plan(&mut Sources::Context(ctx));
                Ok((p.map_err(|e| self.err(i, e))?, is_dir, String::new()))
            }
        }
    }

    /// The context directory a read-only bind mount may show as it is:
    /// `.dockerignore` excludes nothing in it (else a copy without those
    /// files is made).
    fn direct_bind(&self, m: &Mount, is_dir: bool) -> Option<(PathBuf, (u64, u64))> {
        use std::os::unix::fs::MetadataExt;
        if m.from.is_some() || !m.read_only || !is_dir {
            return None;
        }
        let ctx = self.context.as_ref()?;
        let rel = copy::clean_source(&m.source)?;
        let inside = |p: &String| rel.is_empty() || *p == rel || p.starts_with(&format!("{rel}/"));
        if ctx.excluded.iter().any(inside) {
            return None;
        }
        let path = ctx.path(&rel);
        let meta = match ctx.entries.get(&rel) {
            Some(e) => e.meta.clone(),
            None if rel.is_empty() => fs::symlink_metadata(&path).ok()?,
            None => return None,
        };
        Some((path, (meta.dev(), meta.ino())))
    }

    /// Makes the planned mounts ready for a step in `dir` (a cache miss).
    pub(super) fn ready_mounts(
        &self,
        planned: &[Planned],
        dir: &StepDir,
        i: &Instruction,
    ) -> Result<Ready, Error> {
        let mut ready = Ready::default();
        for (n, p) in planned.iter().enumerate() {
            let m = &p.mount;
            let target = PathBuf::from(&m.target);
            match m.kind {
                Type::Bind if p.direct.is_some() => {
                    let (path, listed) = p.direct.clone().expect("direct");
                    ready.volumes.push(Volume {
                        host: path,
                        container: target,
                        read_only: true,
                        listed: Some(listed),
                    });
                }
                Type::Bind => {
                    let (plan, is_dir) = p.bind.as_ref().expect("planned bind");
                    let host = bind_tree(plan, *is_dir, dir, n)?;
                    ready.volumes.push(Volume {
                        host,
                        container: target,
                        read_only: m.read_only,
                        listed: None,
                    });
                }
                Type::Cache => {
                    let seed = p.bind.as_ref().map(|(plan, _)| plan);
                    let host = cache_dir(self.root, (m, seed), dir, n, &mut ready._locks)?;
                    ready.volumes.push(Volume {
                        host,
                        container: target,
                        read_only: m.read_only,
                        listed: None,
                    });
                }
                Type::Tmpfs => ready.tmpfs.push(Tmpfs {
                    path: target,
                    flags: vec!["exec".into()],
                    data: m.size.map(|s| format!("size={s}")).into_iter().collect(),
                }),
                Type::Secret => {
                    let Some((_, bytes)) = self.opts.secrets.iter().find(|(id, _)| *id == m.id)
                    else {
                        if m.required {
                            return Err(self.err(
                                i,
                                format!(
                                    "secret {:?} is required: give it with --secret id={},src=FILE (or env=VARIABLE)",
                                    m.id, m.id
                                ),
                            ));
                        }
                        continue;
                    };
                    if let Some(var) = &m.env {
                        let text = String::from_utf8(bytes.clone()).map_err(|_| {
                            self.err(
                                i,
                                format!(
                                    "secret {:?} is not text, so it cannot be a variable",
                                    m.id
                                ),
                            )
                        })?;
                        ready.env.push(format!("{var}={text}"));
                    }
                    if !m.target.is_empty() {
                        ready.secrets.push(SecretFile {
                            path: target,
                            bytes: bytes.clone(),
                            mode: m.mode,
                            uid: m.uid,
                            gid: m.gid,
                        });
                    }
                }
            }
        }
        Ok(ready)
    }
}

/// Writes what a bind mount shows under the step's scratch dir; returns the
/// path to bind (the tree, or the one file a file source is).
fn bind_tree(plan: &Plan, is_dir: bool, dir: &StepDir, n: usize) -> Result<PathBuf, Error> {
    let tree = dir.file(&format!("mount-{n}"));
    fs::create_dir(&tree).map_err(|e| Error::io("create", &tree, e))?;
    unpack_plan(plan, &tree, dir, n)?;
    if is_dir {
        return Ok(tree);
    }
    let name = plan
        .entries
        .keys()
        .find(|k| !k.contains('/'))
        .cloned()
        .unwrap_or_default();
    Ok(tree.join(name))
}

/// The files of `plan` into directory `into`, through a tar in the step's
/// directory (mount `n`'s), which goes once unpacked.
fn unpack_plan(plan: &Plan, into: &Path, dir: &StepDir, n: usize) -> Result<(), Error> {
    let tar = dir.file(&format!("mount-{n}.tar"));
    let written = copy::write(plan, &tar).map_err(|e| Error::io("write", &tar, e))?;
    let file = File::open(&tar).map_err(|e| Error::io("open", &tar, e))?;
    unpack::unpack_into(file, into, &written.digest, Whiteouts::Apply)
        .map_err(|e| Error::io("unpack", into, std::io::Error::other(e.to_string())))?;
    let _ = fs::remove_file(&tar);
    Ok(())
}

/// The cache mount's directory, made on first use with its mode and owner
/// (and, with `from=`, the seed's files), and locked as its sharing says.
fn cache_dir(
    root: &Root,
    (m, seed): (&Mount, Option<&Plan>),
    dir: &StepDir,
    n: usize,
    locks: &mut Vec<Flock<File>>,
) -> Result<PathBuf, Error> {
    let base = root.build_mounts_dir();
    let name = sha256_of(m.id.as_bytes()).hex().to_owned();
    let path = base.join(&name);
    fs::create_dir_all(&base).map_err(|e| Error::io("create", &base, e))?;
    let lock_path = base.join(format!("{name}.lock"));
    let lock_file = File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
    let how = match m.sharing {
        Sharing::Shared => FlockArg::LockShared,
        Sharing::Locked => FlockArg::LockExclusive,
        Sharing::Private => FlockArg::LockExclusiveNonblock,
    };
    let path = match Flock::lock(lock_file, how) {
        Ok(lock) => {
            locks.push(lock);
            path
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if m.sharing == Sharing::Private => {
            dir.file(&format!("mount-{n}"))
        }
        Err((_, e)) => return Err(Error::io("lock", &lock_path, e.into())),
    };
    if !path.exists() {
        // Made beside it and renamed into place, so a step sharing the cache
        // sees it whole or not at all (and the first rename wins).
        let new = dir.file(&format!("mount-{n}.new"));
        fs::DirBuilder::new()
            .mode(m.mode)
            .create(&new)
            .map_err(|e| Error::io("create", &new, e))?;
        if let Some(plan) = seed {
            unpack_plan(plan, &new, dir, n)?;
        }
        fs::set_permissions(&new, fs::Permissions::from_mode(m.mode))
            .map_err(|e| Error::io("chmod", &new, e))?;
        std::os::unix::fs::chown(&new, Some(m.uid), Some(m.gid))
            .map_err(|e| Error::io("chown", &new, e))?;
        if let Err(e) = fs::rename(&new, &path) {
            let _ = fs::remove_dir_all(&new);
            if !path.is_dir() {
                return Err(Error::io("rename", &path, e));
            }
        }
    }
    Ok(path)
}

/// Removes the cache mounts no step holds; returns how many.
pub fn remove_cache_mounts(root: &Root) -> std::io::Result<usize> {
    let base = root.build_mounts_dir();
    let Ok(entries) = fs::read_dir(&base) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "lock") || !path.is_dir() {
            continue;
        }
        let lock_path = path.with_extension("lock");
        let lock = File::create(&lock_path)
            .ok()
            .and_then(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).ok());
        if lock.is_some() {
            fs::remove_dir_all(&path)?;
            let _ = fs::remove_file(&lock_path);
            n += 1;
        }
    }
    Ok(n)
}

/// The container paths, among `targets`, that the layers in `view` lack,
/// each with its missing parents: the mount points the sandbox will create.
pub(super) fn stubs(view: &LayerView, targets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for t in targets {
        let mut p = t.trim_matches('/').to_owned();
        while !p.is_empty() && view.lookup(Path::new(&p)).is_none() {
            if !out.contains(&p) {
                out.push(p.clone());
            }
            p = p
                .rsplit_once('/')
                .map(|(a, _)| a.to_owned())
                .unwrap_or_default();
        }
    }
    // Deepest first, so a parent is empty by the time it is removed.
    out.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    out
}

/// Removes from `upper` the mount points in `stubs` that are still empty.
pub(super) fn remove_stubs(upper: &Path, stubs: &[String]) {
    for s in stubs {
        let p = upper.join(s);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = fs::remove_file(&p);
            }
            _ => {}
        }
    }
}
