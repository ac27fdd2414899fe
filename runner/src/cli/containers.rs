//! clap structs of the container commands (`run -d` and its flags, `ps`,
//! `logs`, `stop`, `kill`, `wait`, `start`, `restart`, `rm`, `inspect`,
//! `container prune`) and their conversion into library types. Docker's
//! names and flags.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};

use crate::container::detached::{DetachOptions, HealthCheck, RestartPolicy};
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
            health: None::<HealthCheck>,
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
    /// The container (id, id prefix or name).
    pub container: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl From<&ExecArgs> for ExecOptions {
    fn from(a: &ExecArgs) -> ExecOptions {
        ExecOptions {
            interactive: a.interactive,
            tty: a.tty,
            env: a.env.clone(),
            workdir: a.workdir.clone(),
            user: a.user.clone(),
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
