//! `runner exec`: a command in a running detached container, with the
//! container's environment (plus `-e`), its user or `-u`, its working
//! directory or `-w`, and exactly its confinement: its namespaces and
//! cgroup, capabilities, `no_new_privs` and seccomp filter (rebuilt from
//! its `config.json` as its monitor does). The sandbox does the joining
//! ([`crate::sandbox::exec`]). A foreground container (`run` without
//! `-d`) records the same `config.json`, so `exec` joins it too.
//!
//! With a timeout (`--timeout`, and every health check), the command and
//! every process it started in the container are killed once it passes,
//! not only the command (see `sandbox::reap`); the status is then 124.

use super::control::{self, running};
use super::detached;
use super::records;
use super::{build_spec, Error, RunResult};
use crate::paths::Root;
use crate::sandbox::{self, Join};
use crate::seccomp;

/// What `exec` asks for besides the container and the command.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Keep stdin attached.
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// More environment, `KEY=value` (or `KEY` to copy the runner's).
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Kill it, and what it started, after this long.
    pub timeout: Option<std::time::Duration>,
}

/// The status of an `exec` that ran past its timeout (as `timeout(1)`'s).
pub const TIMED_OUT: i32 = 124;

/// Runs `command` in container `what` and waits for it.
pub fn exec(
    root: &Root,
    what: &str,
    command: &[String],
    options: &ExecOptions,
) -> Result<RunResult, control::Error> {
    let s = records::find(root, what)?;
    let config = match detached::load_config(root, &s.id) {
        Ok(c) if running(&s) && s.life.pid > 0 => c,
        _ => return Err(control::Error::NotRunning(what.to_owned())),
    };
    let mut run = config.options.clone();
    run.env.extend(options.env.iter().cloned());
    run.workdir = options.workdir.clone().or(run.workdir);
    run.user = options.user.clone().or(run.user);
    run.tty = options.tty;
    run.interactive = options.interactive;
    run.init = false;
    let mut spec =
        build_spec(&run, &config.exec, &config.command, s.id.clone()).map_err(Box::new)?;
    spec.args = command.to_vec();
    let bpf = match &spec.seccomp {
        Some(p) => Some(
            seccomp::cached_filter(root, p, &spec.capabilities)
                .map_err(|e| Box::new(Error::from(e)))?,
        ),
        None => None,
    };
    let outcome = sandbox::exec(&Join {
        spec: &spec,
        pid: s.life.pid,
        seccomp_bpf: bpf.as_deref(),
        cgroup: &s.cgroup,
        timeout: options.timeout,
    })
    .map_err(|e| Box::new(Error::from(e)))?;
    if outcome.timed_out {
        let limit = options.timeout.unwrap_or_default();
        return Ok(RunResult {
            code: TIMED_OUT,
            oom_killed: false,
            setup_error: Some(format!(
                "the command ran past its timeout ({limit:?}): it and every process it started were killed"
            )),
        });
    }
    Ok(RunResult {
        code: outcome.code,
        oom_killed: false,
        setup_error: outcome.setup_error,
    })
}
