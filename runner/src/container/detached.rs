//! Containers that live on (`run -d`): their configuration on disk, and
//! starting their monitor.
//!
//! `run -d` prepares the container as a foreground run does (image, layers,
//! spec), then [`create`] records it: `config.json` (what to run, written
//! once) and `state.json` (`created`), under the names lock so the name is
//! unique. [`start`] forks the monitor, which takes a new session of its
//! own (see [`super::monitor`]); the monitor
//! writes one line on a pipe once the container's PID 1 runs the workload
//! (or why it could not start), and the command returns, printing the id.
//! From then on every command reads the record; there is no daemon.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::logs::Rotation;
use super::records::{self, NamesLock};
use super::state::{self, Error as StateError, Life, State, Status};
use super::{Error, Prepared, Result, RunOptions};
use crate::cgroup::Cgroup;
use crate::image::digest::Digest;
use crate::image::oci::ExecConfig;
use crate::paths::Root;

/// `--restart`: Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never restart (`no`).
    #[default]
    No,
    /// Restart after a non-zero exit, at most N times (0: no limit).
    OnFailure(u32),
    /// Always restart, unless stopped by hand.
    Always,
    /// Like always; a container stopped by hand stays stopped.
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<RestartPolicy> {
        let bad = || Error::Restart(s.to_owned());
        Ok(match s.split_once(':') {
            None => match s {
                "no" => RestartPolicy::No,
                "on-failure" => RestartPolicy::OnFailure(0),
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure(n.parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        })
    }
}

impl RestartPolicy {
    /// Docker's `HostConfig.RestartPolicy`: name and maximum retry count.
    pub fn docker(self) -> (&'static str, u32) {
        match self {
            RestartPolicy::No => ("no", 0),
            RestartPolicy::OnFailure(n) => ("on-failure", n),
            RestartPolicy::Always => ("always", 0),
            RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        }
    }

    /// Whether a run that ended with `code`, after `restarts` restarts, runs again.
    pub fn restarts(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// A health check (the image's HEALTHCHECK, or the `--health-*` flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `["CMD", argv...]` or `["CMD-SHELL", "command"]`; `["NONE"]` disables.
    pub test: Vec<String>,
    /// Between checks, ms (default 30 s).
    pub interval_ms: u64,
    /// A check taking longer fails, ms (default 30 s).
    pub timeout_ms: u64,
    /// Failures in a row that make the container unhealthy (default 3).
    pub retries: u32,
    /// Failures in this time after start do not count, ms.
    pub start_period_ms: u64,
}

/// The `--health-*` flags, each overriding the image's HEALTHCHECK field.
#[derive(Debug, Clone, Default)]
pub struct HealthFlags {
    /// `--health-cmd` (run with `/bin/sh -c`).
    pub cmd: Option<String>,
    /// `--health-interval`, ms.
    pub interval_ms: Option<u64>,
    /// `--health-timeout`, ms.
    pub timeout_ms: Option<u64>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--health-start-period`, ms.
    pub start_period_ms: Option<u64>,
    /// `--no-healthcheck`.
    pub disabled: bool,
}

impl HealthFlags {
    /// The check a container gets: the image's, with the flags over it;
    /// none with `--no-healthcheck`, or when the test is `NONE` (which
    /// disables one a base image set) or empty.
    pub fn resolve(&self, image: Option<&crate::image::oci::Healthcheck>) -> Option<HealthCheck> {
        if self.disabled {
            return None;
        }
        let ns_to_ms = |ns: u64| (ns > 0).then_some(ns / 1_000_000);
        let test = match &self.cmd {
            Some(cmd) => vec!["CMD-SHELL".to_owned(), cmd.clone()],
            None => image.map(|h| h.test.clone()).unwrap_or_default(),
        };
        if test.is_empty() || test[0] == "NONE" {
            return None;
        }
        Some(HealthCheck {
            test,
            interval_ms: self
                .interval_ms
                .or(image.and_then(|h| ns_to_ms(h.interval)))
                .unwrap_or(30_000),
            timeout_ms: self
                .timeout_ms
                .or(image.and_then(|h| ns_to_ms(h.timeout)))
                .unwrap_or(30_000),
            retries: self
                .retries
                .or(image.map(|h| h.retries).filter(|r| *r > 0))
                .unwrap_or(3),
            start_period_ms: self
                .start_period_ms
                .or(image.and_then(|h| ns_to_ms(h.start_period)))
                .unwrap_or(0),
        })
    }
}

/// What `run -d` asks beyond [`RunOptions`].
#[derive(Debug, Clone, Default)]
pub struct DetachOptions {
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Labels, `KEY=value`.
    pub labels: BTreeMap<String, String>,
    /// Log rotation.
    pub log: Rotation,
    /// The `--health-*` flags.
    pub health: HealthFlags,
}

/// A detached container's `config.json`: everything its monitor needs to
/// (re)start it, and what `inspect` shows. Written once, by [`create`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Container id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// The image's config digest (Docker's image id).
    pub image_id: Digest,
    /// The options given (environment copied from the host resolved).
    pub options: RunOptions,
    /// The command given on the command line.
    pub command: Vec<String>,
    /// The image's execution config.
    pub exec: ExecConfig,
    /// Unpacked layer directories, base first.
    pub layers: Vec<PathBuf>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Log rotation.
    pub log: Rotation,
    /// Health check.
    pub health: Option<HealthCheck>,
    /// The argv PID 1 runs.
    pub args: Vec<String>,
    /// Its environment.
    pub env: Vec<String>,
    /// Hostname.
    pub hostname: String,
}

/// Where a container's config lives.
pub fn config_path(root: &Root, id: &str) -> PathBuf {
    root.container(id).join("config.json")
}

/// Where a container's log lives.
pub fn log_path(root: &Root, id: &str) -> PathBuf {
    root.container(id).join("container.log")
}

/// Reads a detached container's config.
pub fn load_config(root: &Root, id: &str) -> Result<Config> {
    let path = config_path(root, id);
    let bytes = fs::read(&path).map_err(|source| Error::Prepare {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Prepare {
        path,
        source: std::io::Error::other(e),
    })
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "tender", "witty",
];
const NOUNS: [&str; 16] = [
    "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "kepler", "lovelace",
    "meitner", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak",
];

/// A free name like Docker's (`happy_turing`), from the id's digits.
fn default_name(root: &Root, id: &str) -> String {
    let bytes = hex::decode(&id[..8]).unwrap_or_else(|_| vec![0; 4]);
    let base = format!(
        "{}_{}",
        ADJECTIVES[usize::from(bytes[0]) % 16],
        NOUNS[usize::from(bytes[1]) % 16]
    );
    if !records::name_taken(root, &base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|n| !records::name_taken(root, n))
        .expect("some name is free")
}

/// Records a prepared container as `created`: its directory, `config.json`
/// and `state.json`. The name (given, or made up) is checked under the
/// names lock. Returns its config.
pub fn create(
    root: &Root,
    prepared: &Prepared,
    options: &RunOptions,
    command: &[String],
    detach: &DetachOptions,
) -> Result<Config> {
    let spec = &prepared.spec;
    // Compiled here, so the monitor finds the filter cached: compiling it
    // there would leave libseccomp's heap in a process that lives on.
    if let Some(profile) = &spec.seccomp {
        crate::seccomp::cached_filter(root, profile, &spec.capabilities)?;
    }
    let _names = NamesLock::take(root)?;
    let name = match &spec.name {
        Some(n) if records::name_taken(root, &n.to_string()) => {
            return Err(StateError::NameInUse(n.to_string()).into())
        }
        Some(n) => n.to_string(),
        None => default_name(root, &spec.id),
    };
    let config = config_of(prepared, options, command, detach, &name);
    let dir = root.container(&spec.id);
    let prepare_err = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Prepare { path, source }
    };
    crate::paths::create_private_dir(&root.containers_dir())
        .map_err(prepare_err(&root.containers_dir()))?;
    crate::paths::create_private_dir(&dir).map_err(prepare_err(&dir))?;
    for sub in ["upper", "work", "rootfs"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(prepare_err(&p))?;
    }
    write_config(root, &config)?;
    let now = state::now_ms();
    records::save(
        root,
        &State {
            id: spec.id.clone(),
            name: Some(name),
            image: config.image.clone(),
            owner_pid: 0,
            owner_start: 0,
            owner_boot: String::new(),
            cgroup: Cgroup::for_container(Path::new("/sys/fs/cgroup"), &spec.id)?,
            layers: prepared.image.diff_ids.clone(),
            detached: true,
            life: Life {
                status: Status::Created,
                created: now,
                command: spec.args.clone(),
                health: None,
                ..Life::default()
            },
        },
    )?;
    Ok(config)
}

/// Writes a container's `config.json` (its directory exists).
pub(super) fn write_config(root: &Root, config: &Config) -> Result<()> {
    let path = config_path(root, &config.id);
    let bytes = serde_json::to_vec_pretty(config).expect("config serializes");
    crate::fsutil::write_replace(&path, &bytes, false)
        .map_err(|source| Error::Prepare { path, source })
}

/// The config of a prepared container named `name`.
pub(super) fn config_of(
    prepared: &Prepared,
    options: &RunOptions,
    command: &[String],
    detach: &DetachOptions,
    name: &str,
) -> Config {
    let spec = &prepared.spec;
    let mut options = options.clone();
    options.name = Some(name.to_owned());
    // `-e KEY` copies the host's value now, not at each restart.
    options.env = options
        .env
        .iter()
        .filter_map(|e| match e.contains('=') {
            true => Some(e.clone()),
            false => std::env::var(e).ok().map(|v| format!("{e}={v}")),
        })
        .collect();
    Config {
        id: spec.id.clone(),
        name: name.to_owned(),
        image: prepared.image.reference.clone(),
        image_id: prepared.image.config.clone(),
        options,
        command: command.to_vec(),
        exec: prepared
            .image
            .image_config
            .config
            .clone()
            .unwrap_or_default(),
        layers: prepared.layers.clone(),
        restart: detach.restart,
        labels: detach.labels.clone(),
        log: detach.log,
        health: detach.health.resolve(
            prepared
                .image
                .image_config
                .config
                .as_ref()
                .and_then(|c| c.healthcheck.as_ref()),
        ),
        args: spec.args.clone(),
        env: spec.env.clone(),
        hostname: spec.hostname.clone(),
    }
}

/// The container could not start.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartFailed {
    /// Docker's exit status for it (125, 126 or 127).
    pub code: i32,
    /// Why.
    pub message: String,
}

/// Starts the monitor of container `id` and waits for its word: `Ok` once
/// PID 1 runs the workload, [`StartFailed`] if the container could not
/// start. The monitor is a fork of this process (no second program start,
/// no second parse of the command line); it has no store and no thread,
/// and it rebuilds what it runs from `config.json` as every later start
/// does. Its own diagnostics go to `<dir>/monitor.log`.
pub fn start(root: &Root, id: &str) -> Result<(), StartFailed> {
    let failed = |message: String| StartFailed { code: 125, message };
    let log = fs::File::create(root.container(id).join("monitor.log"))
        .map_err(|e| failed(format!("creating the monitor's log: {e}")))?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| failed(format!("pipe2: {e}")))?;
    crate::sandbox::wait_single_threaded(crate::sandbox::THREAD_EXIT_WAIT)
        .map_err(|e| failed(e.to_string()))?;
    let child = match crate::sys::proc::fork() {
        Err(e) => return Err(failed(format!("starting the monitor: {e}"))),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(report_r);
            std::process::exit(super::monitor::forked(root, id, report_w, log))
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
    };
    drop(report_w);
    drop(log);
    let mut line = String::new();
    let _ = BufReader::new(fs::File::from(report_r)).read_line(&mut line);
    // The monitor goes on alone (its own session); reap it if it already left.
    let _ = nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    match line.trim_end().split_once(' ') {
        None if line.trim_end() == "ok" => Ok(()),
        Some(("error", rest)) => {
            let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
            Err(StartFailed {
                code: code.parse().unwrap_or(125),
                message: message.to_owned(),
            })
        }
        _ => {
            let detail =
                fs::read_to_string(root.container(id).join("monitor.log")).unwrap_or_default();
            Err(failed(format!(
                "the monitor of {} ended before the container started: {}",
                &id[..12],
                detail.trim()
            )))
        }
    }
}
