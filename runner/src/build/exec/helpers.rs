//! The builder's helpers around layers: the context (opened once), the
//! cache lookups and records, moving written layers into the store, the
//! final image, `COPY --from` sources, and a failing RUN's message.

use std::path::PathBuf;

use serde_json::json;

use super::super::cache::{self, Record};
use super::super::config as cfg;
use super::super::context::Context;
use super::super::copy::Src;
use super::super::fetch;
use super::super::git;
use super::super::ignore::Ignore;
use super::super::layer::LAYER_MEDIA_TYPE;
use super::super::parse::{Instruction, Keyword};
use super::super::step::StepDir;
use super::super::view::LayerView;
use super::super::Error;
use super::{Builder, State, PROXY_ARGS};
use crate::image::digest::{sha256_of, Digest};
use crate::image::oci::{Descriptor, OCI_MANIFEST};
use crate::image::store::ImageStore;

/// Lines kept from a failing RUN's output.
const TAIL_LINES: usize = 10;

impl Builder<'_> {
    pub(super) fn context(&mut self) -> Result<&mut Context, Error> {
        if self.context.is_none() {
            let ignore = Ignore::parse(self.opts.dockerignore.as_deref().unwrap_or(""));
            let dir = std::fs::canonicalize(&self.opts.context)
                .map_err(|e| Error::io("open context", &self.opts.context, e))?;
            let key = sha256_of(dir.as_os_str().as_encoded_bytes());
            let ctx = Context::open(&dir, &ignore, self.root.build_stat_cache(&key))
                .map_err(|e| Error::io("list context", &dir, e))?;
            self.context = Some(ctx);
        }
        Ok(self.context.as_mut().expect("just opened"))
    }

    /// Adds the layer a step made (or found cached); no layer is only history.
    pub(super) fn add_layer(&self, st: &mut State, record: Record, created_by: String) {
        let created = cfg::step_time(record.created.as_deref());
        if let Some((digest, size)) = record.layer {
            st.image["rootfs"]["diff_ids"]
                .as_array_mut()
                .expect("diff_ids")
                .push(json!(digest.to_string()));
            st.layers.push((
                Descriptor::new(LAYER_MEDIA_TYPE, digest.clone(), size),
                digest,
            ));
            cfg::history(&mut st.image, created_by, false, &created);
        } else {
            cfg::history(&mut st.image, created_by, true, &created);
        }
        st.created = Some(created);
    }

    /// The cache record for `key`; with `--no-cache`, only one this build
    /// wrote (a copy building a stage in parallel).
    pub(super) fn lookup(&self, key: &Digest) -> Option<Record> {
        cache::get(self.root, key)
            .filter(|r| !self.opts.no_cache || r.session.as_deref() == Some(&self.session))
    }

    /// The record of a step of this build that ran now and made `layer`.
    pub(super) fn record(&self, layer: Option<(Digest, u64)>) -> Record {
        Record {
            session: Some(self.session.clone()),
            ..Record::made(layer)
        }
    }

    /// A cached record for `key` whose layer is still stored.
    pub(super) fn cached(&self, key: &Digest) -> Result<Option<Record>, Error> {
        let Some(r) = self.lookup(key) else {
            return Ok(None);
        };
        match &r.layer {
            None => Ok(Some(r)),
            Some((d, _)) => {
                let have = self.with_store(|store: &ImageStore| store.has_blob(d))?;
                Ok(have.then_some(r))
            }
        }
    }

    /// Moves a written layer into the store and records it for `key`.
    pub(super) fn keep_layer(
        &self,
        key: &Digest,
        written: Option<super::super::layer::Written>,
    ) -> Result<Record, Error> {
        let layer = match written {
            Some(w) if w.entries > 0 => {
                self.with_store(|store| store.put_hashed_file(&w.digest, &w.path))?;
                self.memory.borrow_mut().wrote(&w.digest);
                Some((w.digest, w.size))
            }
            _ => None,
        };
        let record = self.record(layer);
        cache::put(self.root, key, &record)
            .map_err(|e| Error::io("write", &self.root.build_cache(key), e))?;
        Ok(record)
    }

    /// The final image into the store, under every tag.
    pub(super) fn store_image(&self, st: &State) -> Result<(Digest, Digest), Error> {
        let mut image = st.image.clone();
        // As new as its newest step: a fully cached rebuild is the same image.
        image["created"] = json!(st.created.clone().unwrap_or_else(cfg::created));
        let config = serde_json::to_vec(&image).expect("json");
        let config_digest = sha256_of(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": Descriptor::new(store::manifest::OCI_CONFIG, config_digest.clone(), config.len() as u64),
            "layers": st.layers.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("json");
        let manifest_digest = sha256_of(&manifest);
        self.with_store(|store| -> Result<(), Error> {
            store.put_blob_bytes(&config_digest, &config)?;
            for r in &self.opts.tags {
                store.put_image(r, &manifest)?;
            }
            Ok(())
        })?;
        Ok((manifest_digest, config_digest))
    }

    pub(super) fn view(&self, st: &State) -> Result<LayerView, Error> {
        Ok(LayerView::new(self.layer_dirs(&st.layers)?))
    }

    /// The empty layer directory (for RUN on scratch).
    pub(super) fn empty_layer_dir(&self) -> Result<PathBuf, Error> {
        let id = sha256_of(&[0u8; 1024]);
        let dir = self.root.layer(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        Ok(dir)
    }

    pub(super) fn visible_args(&self, st: &State) -> Vec<String> {
        let env = cfg::env(&st.image);
        let mut out: Vec<String> = st
            .args
            .iter()
            .filter(|(k, v)| v.is_some() && env.iter().all(|(e, _)| e != k))
            .map(|(k, v)| format!("{k}={}", v.clone().unwrap_or_default()))
            .collect();
        for p in PROXY_ARGS {
            if let Some(v) = self.build_arg(p) {
                out.push(format!("{p}={v}"));
            }
        }
        out
    }

    pub(super) fn sources_for_from(
        &mut self,
        from: &str,
        s: usize,
        i: &Instruction,
    ) -> Result<(LayerView, Digest), Error> {
        if let Some(dep) = self.stage_index(from, s) {
            let st = self
                .done
                .get(&dep)
                .cloned()
                .ok_or_else(|| self.err(i, format!("stage {from} is not built")))?;
            return Ok((self.view(&st)?, st.key));
        }
        let names: Vec<String> = self.stages[..s]
            .iter()
            .filter_map(|d| d.name.clone())
            .collect();
        let (_, layers, digest) = self.image(from, i).map_err(|e| {
            self.err(
                i,
                format!(
                    "--from={from}: not a stage of this Dockerfile (stages before: {}) and not an image that could be pulled: {e}",
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                ),
            )
        })?;
        Ok((LayerView::new(self.layer_dirs(&layers)?), digest))
    }

    pub(super) fn run_failed(
        &self,
        i: &Instruction,
        dir: &StepDir,
        argv: &[String],
        code: i32,
        setup: Option<String>,
    ) -> Error {
        let log = std::fs::read_to_string(dir.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        let mut message = format!(
            "process {:?} did not complete successfully: exit code: {code}",
            argv.join(" ")
        );
        if let Some(s) = setup {
            message.push_str(&format!(" ({s})"));
        }
        if !tail.is_empty() {
            message.push_str("\nlast output lines:");
            for l in tail {
                message.push_str("\n  > ");
                message.push_str(l);
            }
        }
        self.err(i, message)
    }

    /// A COPY's or ADD's sources as given: heredocs, URLs (ADD; fetched
    /// into a scratch dir, which is returned, revalidated when
    /// `revalidate`, checked against `--checksum`), paths. The flag says
    /// whether a URL answered "not modified" and so has no file.
    pub(super) fn gather_sources(
        &self,
        st: &State,
        i: &Instruction,
        srcs: &[String],
        revalidate: bool,
        checksum: Option<&str>,
    ) -> Result<(Vec<Src>, Option<StepDir>, bool), Error> {
        let mut heredocs = i.heredocs.iter();
        let mut sources = Vec::new();
        let mut fetch_dir: Option<StepDir> = None;
        let mut unfetched = false;
        let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if checksum.is_some() && (i.keyword != Keyword::Add || !srcs.iter().all(|s| is_url(s))) {
            return Err(self.err(i, "--checksum is only for ADD of an http(s) URL".into()));
        }
        for src in srcs {
            if src.starts_with("<<") {
                let h = heredocs
                    .next()
                    .ok_or_else(|| self.err(i, format!("{src}: no heredoc body")))?;
                let content = if h.expand {
                    self.word(&h.content.replace('"', "\\\""), st, i)?
                } else {
                    h.content.clone()
                };
                sources.push(Src::Heredoc(h.name.clone(), content.into_bytes()));
            } else if i.keyword == Keyword::Add && is_url(src) {
                if fetch_dir.is_none() {
                    fetch_dir = Some(StepDir::create(self.root)?);
                }
                let dir = fetch_dir.as_ref().expect("just made");
                let file = dir.file(&format!("fetch-{}", sources.len()));
                let answer =
                    fetch::fetch_known(self.root, src, &self.opts.registries, &file, revalidate)
                        .map_err(|m| self.err(i, m))?;
                unfetched |= matches!(answer, fetch::Answer::NotModified(_));
                let f = answer.fetched().clone();
                if let Some(want) = checksum.filter(|c| *c != f.digest) {
                    return Err(self.err(
                        i,
                        format!(
                            "--checksum={want} does not match {src}: its body is {}",
                            f.digest
                        ),
                    ));
                }
                sources.push(Src::Url(f, file));
            } else {
                sources.push(Src::Path(src.clone()));
            }
        }
        Ok((sources, fetch_dir, unfetched))
    }

    /// ADD of a git URL (its only source): fetched and checked out in a
    /// scratch directory, with `--checksum` (a commit id) checked. `None`
    /// for any other COPY or ADD.
    pub(super) fn git_source(
        &self,
        i: &Instruction,
        srcs: &[String],
        checksum: Option<&str>,
    ) -> Result<Option<GitSource>, Error> {
        if i.keyword != Keyword::Add || !srcs.iter().any(|s| git::is_git_url(s)) {
            return Ok(None);
        }
        if srcs.len() > 1 || i.flag("from").is_some() {
            let m = "ADD of a git repository takes no other source and no --from";
            return Err(self.err(i, m.into()));
        }
        let src = &srcs[0];
        let url = git::parse(src).map_err(|m| self.err(i, m))?;
        let dir = StepDir::create(self.root)?;
        let (repo, home) = (dir.file("repo"), dir.file("home"));
        std::fs::create_dir(&home).map_err(|e| Error::io("create", &home, e))?;
        let commit =
            git::checkout(&url, &repo, &home).map_err(|m| self.err(i, format!("{src}: {m}")))?;
        if let Some(want) = checksum.filter(|c| *c != commit) {
            let m = format!("--checksum={want} does not match {src}: it is at commit {commit}");
            return Err(self.err(i, m));
        }
        let keep = i
            .flags
            .iter()
            .any(|(n, v)| n == "keep-git-dir" && v.as_deref() != Some("false"));
        let ignore = Ignore::parse(if keep { "" } else { ".git" });
        let context = Context::open(&repo, &ignore, home.join("stat-cache"))
            .map_err(|e| Error::io("list", &repo, e))?;
        let subdir = if url.subdir.is_empty() {
            ".".into()
        } else {
            url.subdir
        };
        Ok(Some(GitSource {
            _dir: dir,
            context,
            subdir,
        }))
    }
}

/// A checked-out repository an ADD copies from, listed as a context.
pub(super) struct GitSource {
    /// The scratch directory holding the checkout, until the layer is written.
    _dir: StepDir,
    /// The checkout (without `.git` unless `--keep-git-dir`).
    pub context: Context,
    /// The directory of it to add (`.`: all of it).
    pub subdir: String,
}
