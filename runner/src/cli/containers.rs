//! clap structs of the container commands (`run -d` and its flags, `ps`,
//! `logs`, `stop`, `kill`, `wait`, `start`, `restart`, `rm`, `inspect`,
//! `container prune`) and their conversion into library types. Docker's
//! names and flags.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::container::detached::{DetachOptions, HealthFlags, RestartPolicy};
use crate::container::exec::ExecOptions;
use crate::container::logs::Rotation;
use crate::container::{self, Error};

/// `run`'s flags for containers that live on.
#[derive(Debug, Args, Clone, Default)]
pub struct DetachArgs {
    /// Run in the background: print the container id and return at once.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Restart policy: no, on-failure[:N], always or unless-stopped (with -d).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Set a label KEY=VALUE (with -d).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Log options: max-size=SIZE (default 10m), max-file=N (default 3) (with -d).
    #[arg(long = "log-opt")]
    pub log_opts: Vec<String>,
    /// Command that checks the container's health, run with /bin/sh -c (with -d).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between health checks (30s, 500ms, 1m; default 30s).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Longest a health check may run (default 30s).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Failures in a row that make the container unhealthy (default 3).
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Time after start during which failures do not count (default 0s).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
}

/// `500ms`, `30s`, `1m`, `1h`, `1m30s` in milliseconds.
fn duration_ms(flag: &str, text: &str) -> Result<u64, Error> {
    let bad = || Error::Duration(flag.to_owned(), text.to_owned());
    let mut total = 0u64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => return Err(bad()),
        };
        total += n * unit;
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

impl DetachArgs {
    /// The library's options, checked.
    pub fn options(&self) -> Result<DetachOptions, Error> {
        let mut log = Rotation::default();
        for opt in &self.log_opts {
            match opt.split_once('=') {
                Some(("max-size", v)) => log.max_size = container::parse_memory(v)?,
                Some(("max-file", v)) => {
                    log.max_files = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| Error::LogOpt(opt.clone()))?
                }
                _ => return Err(Error::LogOpt(opt.clone())),
            }
        }
        let labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (l.clone(), String::new()),
            })
            .collect();
        Ok(DetachOptions {
            restart: self.restart.parse::<RestartPolicy>()?,
            labels,
            log,
            health: HealthFlags {
                cmd: self.health_cmd.clone(),
                interval_ms: self
                    .health_interval
                    .as_deref()
                    .map(|t| duration_ms("--health-interval", t))
                    .transpose()?,
                timeout_ms: self
                    .health_timeout
                    .as_deref()
                    .map(|t| duration_ms("--health-timeout", t))
                    .transpose()?,
                retries: self.health_retries,
                start_period_ms: self
                    .health_start_period
                    .as_deref()
                    .map(|t| duration_ms("--health-start-period", t))
                    .transpose()?,
                disabled: self.no_healthcheck,
            },
        })
    }
}

/// `runner ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show every container (default: running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only the ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter: status=S, name=N, label=K[=V], id=PREFIX.
    #[arg(short = 'f', long = "filter")]
    pub filters: Vec<String>,
    /// `json` for one JSON object per line.
    #[arg(long)]
    pub format: Option<String>,
}

/// `runner logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what the container writes, until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (or `all`).
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Only lines since a time (RFC 3339, Unix seconds, or a duration like 10m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show each line's time.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// The container (id, id prefix or name).
    pub container: String,
}

/// `runner stop` and `runner restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's, 10).
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `runner kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send (default SIGKILL).
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `runner rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `runner exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=value, or KEY to copy the host's).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Kill the command, and every process it started in the container,
    /// after this long (500ms, 30s, 1m); exit status 124 then.
    #[arg(long, value_parser = exec_timeout)]
    pub timeout: Option<u64>,
    /// The container (id, id prefix or name).
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn exec_timeout(text: &str) -> Result<u64, String> {
    duration_ms("--timeout", text).map_err(|e| e.to_string())
}

impl From<&ExecArgs> for ExecOptions {
    fn from(a: &ExecArgs) -> ExecOptions {
        ExecOptions {
            interactive: a.interactive,
            tty: a.tty,
            env: a.env.clone(),
            workdir: a.workdir.clone(),
            user: a.user.clone(),
            timeout: a.timeout.map(std::time::Duration::from_millis),
        }
    }
}

/// `runner container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove every container that has ended.
    Prune {
        /// Accepted for Docker's habits (there is no prompt).
        #[arg(short = 'f', long)]
        force: bool,
    },
}
