//! One instruction of a stage: its effect on the image config, its step
//! key, and for RUN, COPY, ADD and WORKDIR the layer (from the cache, or
//! made). Returns whether the step came from the cache.

use std::path::Path;

use serde_json::{json, Value};

use super::super::cache;
use super::super::config as cfg;
use super::super::copy::{self, Sources, Src};
use super::super::expand;
use super::super::ignore::Ignore;
use super::super::live::Painter;
use super::super::parse::{Args, Instruction, Keyword};
use super::super::snapshot;
use super::super::step::{self, RunStep, StepDir};
use super::super::view::LayerView;
use super::super::Error;
use super::mounts;
use super::{join_workdir, Builder, State};

impl Builder<'_> {
    pub(super) fn instruction(
        &mut self,
        s: usize,
        st: &mut State,
        i: &Instruction,
    ) -> Result<bool, Error> {
        let text = i.text.as_str();
        match i.keyword {
            Keyword::From => unreachable!("stages start at FROM"),
            Keyword::Run => return self.run(s, st, i),
            Keyword::Copy | Keyword::Add => return self.copy(s, st, i),
            Keyword::Workdir => return self.workdir(st, i),
            Keyword::Env => {
                let pairs =
                    expand::key_values(text, self.escape, true).map_err(|m| self.err(i, m))?;
                let mut shown = Vec::new();
                let mut values = Vec::new();
                for (k, v) in pairs {
                    let v = self.word(&v.unwrap_or_default(), st, i)?;
                    shown.push(format!("{k}={v}"));
                    values.push((k, v));
                }
                for (k, v) in &values {
                    cfg::set_env(&mut st.image, k, v);
                }
                self.meta_step(st, &format!("ENV {}", shown.join(" ")));
            }
            Keyword::Arg => {
                let pairs =
                    expand::key_values(text, self.escape, false).map_err(|m| self.err(i, m))?;
                let mut shown = Vec::new();
                for (k, default) in pairs {
                    let value = match self.build_arg(&k) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(self.word(&d, st, i)?),
                            None => self
                                .meta_args
                                .iter()
                                .rev()
                                .find(|(n, _)| n == &k)
                                .and_then(|(_, v)| v.clone()),
                        },
                    };
                    shown.push(match &value {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    });
                    st.args.retain(|(n, _)| n != &k);
                    st.args.push((k, value));
                }
                self.meta_step(st, &format!("ARG {}", shown.join(" ")));
            }
            Keyword::Label | Keyword::Maintainer => {
                let pairs = if i.keyword == Keyword::Maintainer {
                    st.image["author"] = json!(self.word(text, st, i)?);
                    Vec::new()
                } else {
                    expand::key_values(text, self.escape, true).map_err(|m| self.err(i, m))?
                };
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let k = self.word(&k, st, i)?;
                    let v = self.word(&v.unwrap_or_default(), st, i)?;
                    shown.push(format!("{k}={v}"));
                    let labels = cfg::exec_mut(&mut st.image)
                        .entry("Labels")
                        .or_insert(json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    labels[k] = json!(v);
                }
                let by = match i.keyword {
                    Keyword::Maintainer => format!("MAINTAINER {text}"),
                    _ => format!("LABEL {}", shown.join(" ")),
                };
                self.meta_step(st, &by);
            }
            Keyword::Expose => {
                let mut keys = Vec::new();
                for w in self.words(text, st, i)? {
                    keys.extend(cfg::ports(&w).map_err(|m| self.err(i, m))?);
                }
                let ports = cfg::exec_mut(&mut st.image)
                    .entry("ExposedPorts")
                    .or_insert(json!({}));
                if !ports.is_object() {
                    *ports = json!({});
                }
                for k in &keys {
                    ports[k] = json!({});
                }
                let shown: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
                self.meta_step(st, &format!("EXPOSE map[{}]", shown.join(" ")));
            }
            Keyword::Volume => {
                let paths = match &i.args {
                    Args::Exec(v) => v
                        .iter()
                        .map(|p| self.word(p, st, i))
                        .collect::<Result<Vec<_>, _>>()?,
                    Args::Shell(t) => self.words(t, st, i)?,
                };
                let vols = cfg::exec_mut(&mut st.image)
                    .entry("Volumes")
                    .or_insert(json!({}));
                if !vols.is_object() {
                    *vols = json!({});
                }
                for p in &paths {
                    if p.is_empty() {
                        return Err(
                            self.err(i, "VOLUME specified can not be an empty string".into())
                        );
                    }
                    vols[p] = json!({});
                }
                self.meta_step(st, &format!("VOLUME {paths:?}"));
            }
            Keyword::User => {
                let user = self.word(text, st, i)?;
                cfg::exec_mut(&mut st.image).insert("User".into(), json!(user));
                self.meta_step(st, &format!("USER {user}"));
            }
            Keyword::Stopsignal => {
                let sig = self.word(text, st, i)?;
                crate::spec::parse_signal(&sig).map_err(|e| self.err(i, e.to_string()))?;
                cfg::exec_mut(&mut st.image).insert("StopSignal".into(), json!(sig));
                self.meta_step(st, &format!("STOPSIGNAL {sig}"));
            }
            Keyword::Shell => {
                let Args::Exec(v) = &i.args else {
                    unreachable!("parse checks SHELL is JSON")
                };
                st.shell = v.clone();
                cfg::exec_mut(&mut st.image).insert("Shell".into(), json!(v));
                self.meta_step(st, &format!("SHELL {v:?}"));
            }
            Keyword::Cmd | Keyword::Entrypoint => {
                let argv = match &i.args {
                    Args::Exec(v) => v.clone(),
                    Args::Shell(t) if t.is_empty() => Vec::new(),
                    Args::Shell(t) => st.shell.iter().cloned().chain([t.clone()]).collect(),
                };
                let key = if i.keyword == Keyword::Cmd {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                let exec = cfg::exec_mut(&mut st.image);
                exec.insert(
                    key.into(),
                    if argv.is_empty() {
                        Value::Null
                    } else {
                        json!(argv)
                    },
                );
                if i.keyword == Keyword::Cmd {
                    st.cmd_set = true;
                } else if !st.cmd_set {
                    // A new ENTRYPOINT drops the Cmd it inherited.
                    exec.insert("Cmd".into(), Value::Null);
                }
                self.meta_step(
                    st,
                    &format!(
                        "{} {}",
                        i.keyword,
                        serde_json::to_string(&argv).expect("json")
                    ),
                );
            }
            Keyword::Healthcheck => {
                let hc = self.healthcheck(st, i)?;
                cfg::exec_mut(&mut st.image).insert("Healthcheck".into(), hc.clone());
                self.meta_step(st, &format!("HEALTHCHECK {hc}"));
            }
            Keyword::Onbuild => {
                let trigger = text.to_owned();
                let exec = cfg::exec_mut(&mut st.image);
                let list = exec.entry("OnBuild").or_insert(json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut().expect("array").push(json!(trigger));
                self.meta_step(st, &format!("ONBUILD {trigger}"));
            }
        }
        Ok(self.meta_cached)
    }

    /// An instruction that only changes the config: its key and history.
    /// It has a cache record too (of no layer), so that a rebuild can say
    /// CACHED for it as for the others.
    fn meta_step(&mut self, st: &mut State, created_by: &str) {
        st.key = cache::key(&st.key, &[created_by]);
        let found = self.lookup(&st.key);
        self.meta_cached = found.is_some();
        let record = match found {
            Some(r) => {
                self.cached += 1;
                r
            }
            None => {
                let r = self.record(None);
                let _ = cache::put(self.root, &st.key, &r);
                r
            }
        };
        self.add_layer(st, record, created_by.to_owned());
    }

    fn healthcheck(&self, st: &State, i: &Instruction) -> Result<Value, Error> {
        let words = expand::raw_words(&i.text, self.escape);
        let first = words.first().map(|w| w.to_ascii_uppercase());
        if first.as_deref() == Some("NONE") {
            return Ok(json!({"Test": ["NONE"]}));
        }
        if first.as_deref() != Some("CMD") {
            return Err(self.err(i, "HEALTHCHECK takes NONE or [OPTIONS] CMD command".into()));
        }
        let rest = i.text.trim_start()[3..].trim_start();
        let test = match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) if rest.starts_with('[') => std::iter::once("CMD".to_owned())
                .chain(v)
                .collect::<Vec<_>>(),
            _ => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
        };
        let mut hc = json!({"Test": test});
        for (flag, key) in [
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ] {
            if let Some(v) = i.flag(flag) {
                let v = self.word(v, st, i)?;
                hc[key] = json!(cfg::duration_ns(&v).map_err(|m| self.err(i, m))?);
            }
        }
        if let Some(r) = i.flag("retries") {
            let n: u64 = r
                .parse()
                .map_err(|_| self.err(i, format!("invalid --retries {r:?}")))?;
            hc["Retries"] = json!(n);
        }
        Ok(hc)
    }

    fn run(&mut self, s: usize, st: &mut State, i: &Instruction) -> Result<bool, Error> {
        let argv: Vec<String> = match (&i.args, i.heredocs.first()) {
            (Args::Shell(t), Some(h))
                if t.trim_start_matches("<<").trim_matches(['-', '"', '\'']) == h.name =>
            {
                st.shell
                    .iter()
                    .cloned()
                    .chain([h.content.clone()])
                    .collect()
            }
            (Args::Shell(t), Some(_)) => {
                let mut script = t.clone();
                for h in &i.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
                st.shell.iter().cloned().chain([script]).collect()
            }
            (Args::Shell(t), None) => st.shell.iter().cloned().chain([t.clone()]).collect(),
            (Args::Exec(v), _) => v.clone(),
        };
        if argv.is_empty() {
            return Err(self.err(i, "RUN needs a command".into()));
        }
        let args = self.visible_args(st);
        let network = match i.flag("network").unwrap_or("default") {
            "default" => self.opts.network,
            "none" => crate::spec::Network::None,
            "host" => crate::spec::Network::Host,
            other => return Err(self.err(i, format!("unsupported --network={other}"))),
        };
        let argv_json = serde_json::to_string(&argv).expect("json");
        let args_json = serde_json::to_string(&args).expect("json");
        let (mounts, mounts_key) = self.plan_mounts(s, st, i)?;
        let network_key = format!("{network:?}");
        let mut parts = vec!["RUN", &argv_json, &args_json, &network_key];
        if !mounts.is_empty() {
            parts.push(&mounts_key);
        }
        let key = cache::key(&st.key, &parts);
        let shown = argv.join(" ");
        let created_by = if args.is_empty() {
            format!("RUN {shown} # buildkit")
        } else {
            format!("RUN |{} {} {shown} # buildkit", args.len(), args.join(" "))
        };
        st.key = key.clone();
        if let Some(r) = self.cached(&key)? {
            self.cached += 1;
            self.add_layer(st, r, created_by);
            return Ok(true);
        }
        let mut dirs = self.layer_dirs(&st.layers)?;
        if dirs.is_empty() {
            dirs.push(self.empty_layer_dir()?);
        }
        let mut env: Vec<String> = cfg::env(&st.image)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(args);
        let exec = &st.image["config"];
        let targets: Vec<&str> = mounts.iter().map(|m| m.mount.target.as_str()).collect();
        let stubs = mounts::stubs(&LayerView::new(dirs.clone()), &targets);
        let mut on_disk = false;
        let (dir, outcome) = loop {
            let dir = StepDir::for_run(self.root, on_disk)?;
            let ready = self.ready_mounts(&mounts, &dir, i)?;
            let mut env = env.clone();
            env.extend(ready.env.iter().cloned());
            self.close_store();
            let painter = self
                .live
                .then(|| Painter::start(self.step, &dir.log()))
                .flatten();
            let outcome = step::run(
                self.root,
                &dir,
                &RunStep {
                    argv: argv.clone(),
                    env,
                    user: exec["User"]
                        .as_str()
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned),
                    workdir: exec["WorkingDir"]
                        .as_str()
                        .filter(|u| !u.is_empty())
                        .map(str::to_owned),
                    network,
                    layers: &dirs,
                    volumes: ready.volumes.clone(),
                    tmpfs: ready.tmpfs.clone(),
                    secrets: ready.secrets.clone(),
                },
            )?;
            drop(ready);
            if let Some(p) = painter {
                p.stop();
            }
            if outcome.code != 0 && dir.memory_full() {
                // The step filled the memory scratch: run it again on disk.
                super::say(&format!(
                    "#{} the step filled the memory scratch; running it again on disk",
                    self.step
                ));
                on_disk = true;
                continue;
            }
            break (dir, outcome);
        };
        mounts::remove_stubs(&dir.upper(), &stubs);
        let log = std::fs::read_to_string(dir.log()).unwrap_or_default();
        if outcome.code != 0 {
            return Err(self.run_failed(i, &dir, &argv, outcome.code, outcome.setup_error));
        }
        if self.plain() && !self.live {
            for l in log.lines() {
                super::say(&format!("#{} {l}", self.step));
            }
        }
        self.ran += 1;
        let view = LayerView::new(self.layer_dirs(&st.layers)?);
        let written = snapshot::snapshot(&dir.upper(), &view, &dir.layer_file())
            .map_err(|e| Error::io("snapshot", &dir.upper(), e))?;
        let record = self.keep_layer(&key, Some(written))?;
        self.memory.borrow_mut().retire(dir);
        self.add_layer(st, record, created_by);
        Ok(false)
    }

    fn workdir(&mut self, st: &mut State, i: &Instruction) -> Result<bool, Error> {
        let w = self.word(&i.text, st, i)?;
        let old = st.image["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        let mut new = join_workdir(&old, &w);
        if new.len() > 1 {
            new = new.trim_end_matches('/').to_owned();
        }
        cfg::exec_mut(&mut st.image).insert("WorkingDir".into(), json!(new));
        let key = cache::key(&st.key, &["WORKDIR", &new]);
        st.key = key.clone();
        let created_by = format!("WORKDIR {new}");
        if let Some(r) = self.cached(&key)? {
            self.cached += 1;
            self.add_layer(st, r, created_by);
            return Ok(true);
        }
        let view = LayerView::new(self.layer_dirs(&st.layers)?);
        let written = if view.lookup(Path::new(&new)).is_some() || new == "/" {
            None
        } else {
            let dir = StepDir::create(self.root)?;
            let mut plan = copy::Plan::default();
            // Only the directories themselves: plan() adds the missing parents of its entries.
            let rel = new.trim_start_matches('/').to_owned();
            plan.entries.insert(
                rel.clone(),
                (
                    super::super::layer::Meta {
                        path: rel,
                        kind: super::super::layer::Kind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: super::super::layer::source_date_epoch().unwrap_or(0),
                        xattrs: Vec::new(),
                    },
                    copy::Data::None,
                ),
            );
            let mut parent = Path::new(&new).parent();
            while let Some(p) = parent.filter(|p| p != &Path::new("/")) {
                if view.lookup(p).is_some() {
                    break;
                }
                let r = p.to_string_lossy().trim_start_matches('/').to_owned();
                let mut m = plan.entries.values().next().expect("one entry").0.clone();
                m.path = r.clone();
                plan.entries.insert(r, (m, copy::Data::None));
                parent = p.parent();
            }
            let file = dir.layer_file();
            let w = copy::write(&plan, &file).map_err(|e| Error::io("write", &file, e))?;
            let record = self.keep_layer(&key, Some(w))?;
            self.add_layer(st, record, created_by);
            return Ok(false);
        };
        let record = self.keep_layer(&key, written)?;
        self.add_layer(st, record, created_by);
        Ok(false)
    }

    fn copy(&mut self, s: usize, st: &mut State, i: &Instruction) -> Result<bool, Error> {
        let words: Vec<String> = match &i.args {
            Args::Exec(v) => v
                .iter()
                .map(|w| self.word(w, st, i))
                .collect::<Result<_, _>>()?,
            Args::Shell(t) => self.words(t, st, i)?,
        };
        if words.len() < 2 {
            return Err(self.err(
                i,
                format!(
                    "{} requires at least two arguments: source and destination",
                    i.keyword
                ),
            ));
        }
        let (dest, srcs) = words.split_last().expect("two words");
        let workdir = st.image["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        let dest = join_workdir(&workdir, dest);
        let checksum = i
            .flag("checksum")
            .map(|c| self.word(c, st, i))
            .transpose()?;
        let mut git = self.git_source(i, srcs, checksum.as_deref())?;
        let mut revalidate = true;
        loop {
            // `_fetched` holds the fetched URLs' bodies until the layer is written.
            let (sources, _fetched, unfetched) = match &git {
                Some(g) => (vec![Src::Path(g.subdir.clone())], None, false),
                None => self.gather_sources(st, i, srcs, revalidate, checksum.as_deref())?,
            };
            let view = LayerView::new(self.layer_dirs(&st.layers)?);
            let owner = match i.flag("chown") {
                Some(c) => {
                    Some(cfg::chown(&self.word(c, st, i)?, &view).map_err(|m| self.err(i, m))?)
                }
                None => None,
            };
            let chmod = match i.flag("chmod") {
                Some(m) => Some(
                    u32::from_str_radix(m, 8)
                        .map_err(|_| self.err(i, format!("invalid --chmod={m}: an octal mode")))?,
                ),
                None => None,
            };
            let from = i.flag("from").map(|f| self.word(f, st, i)).transpose()?;
            let extract = i.keyword == Keyword::Add
                && !matches!(i.flag("unpack"), Some("false"))
                && !i
                    .flags
                    .iter()
                    .any(|(n, v)| n == "unpack" && v.as_deref() == Some("false"));
            let mut exclude = String::new();
            for pattern in i.flag_all("exclude") {
                exclude.push_str(&self.word(pattern, st, i)?);
                exclude.push('\n');
            }
            let opts = copy::Options {
                owner,
                chmod,
                extract,
                exclude: Ignore::parse(&exclude),
                parents: i
                    .flags
                    .iter()
                    .any(|(n, v)| n == "parents" && v.as_deref() != Some("false")),
                keep_owners: false,
            };
            let (plan, from_key) = match (&from, &mut git) {
                (_, Some(g)) => {
                    let plan = copy::plan(
                        &mut Sources::Context(&mut g.context),
                        &sources,
                        &dest,
                        &view,
                        &opts,
                    );
                    (plan.map_err(|m| self.err(i, m))?, String::new())
                }
                (Some(f), None) => {
                    let (src_view, key) = self.sources_for_from(f, s, i)?;
                    let plan =
                        copy::plan(&mut Sources::View(&src_view), &sources, &dest, &view, &opts)
                            .map_err(|m| self.err(i, m))?;
                    (plan, key.to_string())
                }
                (None, None) => {
                    let ctx = self.context()?;
                    let plan =
                        copy::plan(&mut Sources::Context(ctx), &sources, &dest, &view, &opts);
                    (plan.map_err(|m| self.err(i, m))?, String::new())
                }
            };
            let flags = serde_json::to_string(&i.flags).expect("json");
            let summary = plan.summary.join("\n");
            let key = cache::key(
                &st.key,
                &[
                    i.keyword.name(),
                    &flags,
                    &words.join(" "),
                    &dest,
                    &from_key,
                    &summary,
                ],
            );
            st.key = key.clone();
            let created_by = format!("{} {} # buildkit", i.keyword, words.join(" "));
            if let Some(r) = self.cached(&key)? {
                self.cached += 1;
                self.add_layer(st, r, created_by);
                return Ok(true);
            }
            if unfetched {
                // A 304 gave the key; the layer needs the body itself.
                revalidate = false;
                continue;
            }
            let dir = StepDir::create(self.root)?;
            let file = dir.layer_file();
            let w = copy::write(&plan, &file).map_err(|e| Error::io("write", &file, e))?;
            let record = self.keep_layer(&key, Some(w))?;
            self.add_layer(st, record, created_by);
            return Ok(false);
        }
    }
}
