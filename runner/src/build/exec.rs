//! Running a build: the stages the target needs, in order, instruction by
//! instruction, each step's key chained from its parent's, and the final
//! image written to the store and tagged only once everything succeeded.
//! Submodules: `instr` (one instruction), `helpers` (cache lookups, layers
//! into the store, the final image, `COPY --from` sources), `memory` (the
//! unpacked layers below a step, this build's own in memory).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use super::cache;
use super::config::{self as cfg, DEFAULT_PATH};
use super::context::Context;

use super::expand;
use super::layer::LAYER_MEDIA_TYPE;
use super::mount;
use super::parse::{self, Instruction, Keyword};
use super::step;
use super::{BuildOptions, Built, Error, Progress};
use crate::container;
use crate::image::digest::{sha256_of, Digest};
use crate::image::oci::{Descriptor, Platform};
use crate::image::pull::PullOptions;
use crate::image::reference::Reference;
use crate::image::store::{self as image_store, ImageStore};
use crate::paths::Root;

/// Build args usable without an ARG line (Docker's predefined proxy args).
const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

struct StageDef {
    name: Option<String>,
    from: Instruction,
    body: Vec<Instruction>,
}

/// A base image: its config, layers (descriptor, diff_id) and manifest digest.
type BaseImage = (Value, Vec<(Descriptor, Digest)>, Digest);

/// A stage as it grows: its image config, layers (descriptor, diff_id) and key.
#[derive(Clone)]
struct State {
    image: Value,
    layers: Vec<(Descriptor, Digest)>,
    key: Digest,
    args: Vec<(String, Option<String>)>,
    shell: Vec<String>,
    cmd_set: bool,
    /// The history time of the newest step this build added.
    created: Option<String>,
}

struct Builder<'a> {
    root: &'a Root,
    opts: &'a BuildOptions,
    escape: char,
    meta_args: Vec<(String, Option<String>)>,
    context: Option<Context>,
    stages: Vec<StageDef>,
    done: HashMap<usize, State>,
    step: usize,
    ran: usize,
    cached: usize,
    platform: Platform,
    meta_cached: bool,
    /// The image store, opened on first use and closed before a RUN (the
    /// sandbox clones, so the process must be single-threaded then).
    store: RefCell<Option<ImageStore>>,
    /// This build's id, in the cache records it writes (see `lookup`).
    session: String,
    /// Set while walking a stage a copy built (`parallel`): not printed again.
    silent: bool,
    /// Whether a RUN's output is redrawn live (a terminal; not in copies).
    live: bool,
    /// The layers this build wrote, unpacked in memory for its later steps.
    memory: RefCell<memory::MemoryLayers>,
}

fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Builds the image `opts` describes; tags it only when every step succeeded.
pub fn build(root: &Root, opts: &BuildOptions) -> Result<Built, Error> {
    let df = parse::parse(&opts.dockerfile_name, &opts.dockerfile)?;
    let mut meta = Vec::new();
    let mut stages: Vec<StageDef> = Vec::new();
    for i in df.instructions {
        if i.keyword == Keyword::From {
            let words: Vec<String> = expand::raw_words(&i.text, df.escape);
            let name = match words.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_ascii_lowercase()),
                [_] => None,
                _ => {
                    return Err(step_err(
                        &opts.dockerfile_name,
                        &i,
                        "FROM takes an image and optionally AS name".into(),
                    ))
                }
            };
            stages.push(StageDef {
                name,
                from: i,
                body: Vec::new(),
            });
        } else if let Some(s) = stages.last_mut() {
            s.body.push(i);
        } else if i.keyword == Keyword::Arg {
            meta.push(i);
        } else {
            return Err(step_err(
                &opts.dockerfile_name,
                &i,
                "no FROM before this instruction (only ARG may come first)".into(),
            ));
        }
    }
    if stages.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no FROM instruction",
            opts.dockerfile_name
        )));
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut b = Builder {
        root,
        opts,
        escape: df.escape,
        meta_args: Vec::new(),
        context: None,
        stages,
        done: HashMap::new(),
        step: 0,
        ran: 0,
        cached: 0,
        platform,
        meta_cached: false,
        store: RefCell::new(None),
        session: container::new_id(),
        silent: false,
        live: opts.progress == Progress::Live,
        memory: RefCell::default(),
    };
    b.meta_args = b.platform_args();
    for i in &meta {
        let vars = b.meta_args.clone();
        for (k, v) in expand::key_values(&i.text, b.escape, false).map_err(|m| b.err(i, m))? {
            let value = match b.build_arg(&k) {
                Some(v) => Some(v),
                None => v.map(|v| b.expand_with(&v, &vars, i)).transpose()?,
            };
            b.meta_args.retain(|(n, _)| n != &k);
            b.meta_args.push((k, value));
        }
    }
    let target = match &opts.target {
        Some(t) => b
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| Error::Usage(format!("target stage {t:?} could not be found")))?,
        None => b.stages.len() - 1,
    };
    let mut order = Vec::new();
    b.needed(target, &mut order)?;
    let alone = b.independent(&order, target);
    let by_copies = if alone.is_empty() {
        Vec::new()
    } else {
        b.build_in_copies(&alone, &order)
    };
    for &s in &order {
        if !by_copies.is_empty() {
            b.step = b.first_step(s, &order);
        }
        b.silent = by_copies.contains(&s);
        let counts = (b.ran, b.cached);
        let state = b.run_stage(s)?;
        if b.silent {
            (b.ran, b.cached) = counts; // the copy's counts are in already
        }
        b.done.insert(s, state);
    }
    b.silent = false;
    if let Some(ctx) = &b.context {
        ctx.save()
            .map_err(|e| Error::io("write stat cache for", &opts.context, e))?;
    }
    let mut state = b.done.remove(&target).expect("the target was built");
    for (k, v) in &opts.labels {
        let labels = cfg::exec_mut(&mut state.image)
            .entry("Labels")
            .or_insert(json!({}));
        labels[k] = json!(v);
    }
    // The in-memory layers and the last scratch are not needed any more.
    // Their teardown forks, so it goes before the store is written to.
    b.memory.take().drop_in_background();
    let stored = b.store_image(&state);
    let (manifest, config) = stored?;
    Ok(Built {
        manifest,
        config,
        ran: b.ran,
        cached: b.cached,
    })
}

fn step_err(file: &str, i: &Instruction, message: String) -> Error {
    let mut instruction = format!("{} {}", i.keyword, i.text);
    if instruction.len() > 60 {
        let mut cut = 57;
        while !instruction.is_char_boundary(cut) {
            cut -= 1;
        }
        instruction.truncate(cut);
        instruction.push_str("...");
    }
    Error::Step {
        file: file.to_owned(),
        line: i.line,
        instruction,
        message,
    }
}

impl Builder<'_> {
    fn err(&self, i: &Instruction, message: String) -> Error {
        step_err(&self.opts.dockerfile_name, i, message)
    }

    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().filter(|n| *n < before))
    }

    fn base_name(&self, s: usize) -> Result<String, Error> {
        let def = &self.stages[s];
        let image = expand::raw_words(&def.from.text, self.escape)[0].clone();
        self.expand_with(&image, &self.meta_args, &def.from)
    }

    /// The stages `s` needs, dependencies first.
    fn needed(&self, s: usize, order: &mut Vec<usize>) -> Result<(), Error> {
        if order.contains(&s) {
            return Ok(());
        }
        if let Some(dep) = self.stage_index(&self.base_name(s)?, s) {
            self.needed(dep, order)?;
        }
        for i in &self.stages[s].body {
            let i = i.nested.as_deref().filter(|_| false).unwrap_or(i);
            let froms: Vec<String> = match i.keyword {
                Keyword::Copy | Keyword::Add => {
                    i.flag("from").map(str::to_owned).into_iter().collect()
                }
                Keyword::Run => i
                    .flag_all("mount")
                    .into_iter()
                    .filter_map(mount::from_of)
                    .collect(),
                _ => Vec::new(),
            };
            for from in froms {
                let from = self.expand_with(&from, &self.meta_args, i)?;
                if let Some(dep) = self.stage_index(&from, s) {
                    self.needed(dep, order)?;
                }
            }
        }
        order.push(s);
        Ok(())
    }

    fn announce(&mut self, stage: usize, i: &Instruction) -> (usize, Instant) {
        self.step += 1;
        if self.plain() {
            let name = self.stages[stage]
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{stage}"));
            say(&format!(
                "#{} [{name}] {} {}",
                self.step,
                i.keyword,
                i.text.replace('\n', " ")
            ));
        }
        (self.step, Instant::now())
    }

    /// Whether steps are printed now.
    fn plain(&self) -> bool {
        self.opts.progress != Progress::Quiet && !self.silent
    }

    fn finish_step(&self, n: usize, started: Instant, cached: bool) {
        if self.plain() {
            if cached {
                say(&format!("#{n} CACHED"));
            } else {
                say(&format!("#{n} DONE {}", step::seconds(started.elapsed())));
            }
        }
    }

    fn pull_options(&self) -> PullOptions {
        PullOptions {
            platform: Some(self.platform.clone()),
            registries: self.opts.registries.clone(),
        }
    }

    /// The base of stage `s`: scratch, an earlier stage, or an image.
    fn base(&mut self, s: usize) -> Result<State, Error> {
        let name = self.base_name(s)?;
        let from = self.stages[s].from.clone();
        let args = Vec::new();
        let shell = vec!["/bin/sh".to_owned(), "-c".to_owned()];
        if let Some(dep) = self.stage_index(&name, s) {
            let mut st = self.done[&dep].clone();
            st.args = args;
            st.cmd_set = false;
            return Ok(st);
        }
        if name == "scratch" {
            let image = json!({
                "architecture": self.platform.architecture,
                "os": self.platform.os,
                // As BuildKit's empty image: `/` as the working directory.
                "config": {"Env": [format!("PATH={DEFAULT_PATH}")], "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            });
            return Ok(State {
                image,
                layers: Vec::new(),
                key: sha256_of(b"scratch"),
                args,
                shell,
                cmd_set: false,
                created: None,
            });
        }
        let (image, layers, digest) = self.image(&name, &from)?;
        let shell = image["config"]["Shell"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or(shell);
        let mut image = image;
        if cfg::env(&image).iter().all(|(k, _)| k != "PATH") {
            cfg::set_env(&mut image, "PATH", DEFAULT_PATH);
        }
        Ok(State {
            image,
            layers,
            key: digest,
            args,
            shell,
            cmd_set: false,
            created: None,
        })
    }

    /// A base image by reference: its config, layers and manifest digest.
    fn image(&self, name: &str, at: &Instruction) -> Result<BaseImage, Error> {
        let reference: Reference = name
            .parse()
            .map_err(|e| self.err(at, format!("{name}: {e}")))?;
        let record = self
            .with_store(|store| -> Result<_, Error> {
                let record = if self.opts.pull {
                    crate::image::pull::pull(self.root, store, &reference, &self.pull_options())
                        .map_err(container::Error::from)?
                } else {
                    container::ensure_image(self.root, store, &reference, &self.pull_options())?
                };
                let raw: Value = serde_json::from_slice(&store.read_blob(&record.config)?)
                    .map_err(|e| self.err(at, format!("{name}: config: {e}")))?;
                Ok((record, raw))
            })
            .map_err(|e| match e {
                Error::Container(c) => self.err(at, format!("{name}: {c}")),
                other => other,
            })?;
        let (record, raw) = record;
        let mut image = json!({
            "architecture": raw["architecture"],
            "os": raw["os"],
            "config": raw.get("config").cloned().unwrap_or(json!({})),
            "rootfs": {"type": "layers", "diff_ids": raw["rootfs"]["diff_ids"]},
            "history": raw.get("history").cloned().unwrap_or(json!([])),
        });
        if let Some(v) = raw.get("variant") {
            image["variant"] = v.clone();
        }
        let layers = record
            .layers
            .iter()
            .cloned()
            .zip(record.diff_ids.iter().cloned())
            .map(|(mut d, id)| {
                d.media_type = oci_layer_type(&d.media_type);
                (d, id)
            })
            .collect();
        Ok((image, layers, record.manifest))
    }

    /// Calls `f` with the image store, opening it if it is closed.
    fn with_store<T, E: From<image_store::Error>>(
        &self,
        f: impl FnOnce(&ImageStore) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.store.borrow().is_none() {
            let opened = ImageStore::open(self.root)?;
            *self.store.borrow_mut() = Some(opened);
        }
        let store = self.store.borrow();
        f(store.as_ref().expect("just opened"))
    }

    /// Closes the image store (before anything that forks a sandbox).
    fn close_store(&self) {
        if let Some(store) = self.store.borrow_mut().take() {
            store.close();
        }
    }

    fn run_stage(&mut self, s: usize) -> Result<State, Error> {
        let from = self.stages[s].from.clone();
        let (n, t) = self.announce(s, &from);
        let mut st = self.base(s)?;
        st.key = cache::key(&st.key, &["FROM", &platform_string(&self.platform)]);
        let cached = self.lookup(&st.key).is_some();
        if !cached {
            let _ = cache::put(self.root, &st.key, &self.record(None));
        }
        self.finish_step(n, t, cached);
        // The base's ONBUILD triggers run first.
        let triggers: Vec<String> = st.image["config"]["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            cfg::exec_mut(&mut st.image).insert("OnBuild".into(), Value::Null);
        }
        let mut body = Vec::new();
        for t in &triggers {
            let parsed = parse::parse(
                &format!("{} (ONBUILD of the base)", self.opts.dockerfile_name),
                t,
            )?;
            body.extend(parsed.instructions.into_iter().map(|mut i| {
                i.line = from.line;
                i
            }));
        }
        body.extend(self.stages[s].body.clone());
        for i in &body {
            let (n, t) = self.announce(s, i);
            let cached = self.instruction(s, &mut st, i)?;
            self.finish_step(n, t, cached);
        }
        Ok(st)
    }
}

/// Prints one progress line in a single write, so that the lines of stages
/// built side by side (by several processes) do not mix.
pub(super) fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// The OCI media type for a layer of media type `t`.
fn oci_layer_type(t: &str) -> String {
    match t {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => LAYER_MEDIA_TYPE.into(),
        other => other.to_owned(),
    }
}

/// A path joined onto the working directory.
fn join_workdir(workdir: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    let base = if workdir.is_empty() { "/" } else { workdir };
    let trailing = path.ends_with('/');
    let mut joined = Path::new(base).join(path).to_string_lossy().into_owned();
    if trailing && !joined.ends_with('/') {
        joined.push('/');
    }
    joined
}

mod helpers;
mod instr;
mod memory;
pub mod mounts;
mod parallel;
mod vars;
