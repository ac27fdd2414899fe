//! Commands on existing containers: `stop`, `kill`, `wait`, `start`,
//! `restart`, `rm` and `container prune`. Each reads the record, acts on
//! the processes it names (PID 1's host pid, checked to still be in the
//! container's cgroup; the monitor, checked by pid and start time) and waits
//! on pidfds, never on a daemon.
//!
//! `stop` marks the record `stop_requested` (so no restart policy brings
//! the container back), sends the stop signal (`--stop-signal` or the
//! image's StopSignal, SIGTERM by default) to PID 1, and after the timeout
//! SIGKILL; it returns once the monitor recorded the end. A foreground
//! container (`run` without `-d`) is stopped through its runner, which
//! forwards SIGTERM as its stop signal with its own `--stop-timeout`.

use std::time::Duration;

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::detached::{self, StartFailed};
use super::records::{self, LookupError};
use super::state::{self, is_live, State, Status};
use crate::cgroup::CgroupManager;
use crate::paths::Root;
use crate::spec;

/// Errors of the container commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container is unknown or ambiguous.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Its record could not be read or written.
    #[error(transparent)]
    State(#[from] state::Error),
    /// Its config could not be read.
    #[error(transparent)]
    Container(#[from] Box<super::Error>),
    /// It could not start.
    #[error(transparent)]
    Start(#[from] StartFailed),
    /// `rm` of a running container without `-f`.
    #[error("cannot remove container {0}: it is running; stop it first, or use rm -f")]
    Running(String),
    /// `exec` in a container that is not running (or runs in the foreground).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `start` of a foreground container.
    #[error("container {0} runs in the foreground of its runner: it cannot be started again")]
    Foreground(String),
    /// The cgroup could not be removed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::Error),
    /// A signal name is invalid.
    #[error(transparent)]
    Signal(#[from] spec::Error),
    /// Waiting for a process failed.
    #[error("waiting for the monitor of {id}: {source}")]
    Wait {
        /// Container id.
        id: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `pid` is PID 1 of the container `s` (in its cgroup; rootless
/// without one, a child of its owner).
fn in_container(pid: i32, s: &State) -> bool {
    if pid <= 0 {
        return false;
    }
    if let crate::cgroup::Cgroup::Unenforced(_) = s.cgroup {
        // Rootless without a cgroup: PID 1 is its owner's child.
        return parent_of(pid) == Some(s.owner_pid);
    }
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&s.id))
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether the container runs (or waits to restart): its owner is alive.
pub fn running(s: &State) -> bool {
    is_live(s) && matches!(s.life.status, Status::Running | Status::Restarting)
}

/// Waits until the owner (monitor or foreground runner) of `s` has exited,
/// or `timeout` passes; true if it exited.
fn wait_owner(s: &State, timeout: Option<Duration>) -> Result<bool> {
    if !is_live(s) {
        return Ok(true);
    }
    let Ok(fd) = crate::sys::proc::pidfd_open(s.owner_pid) else {
        return Ok(true);
    };
    // The pid may have been recycled between the check and the open.
    if !is_live(s) {
        return Ok(true);
    }
    crate::sys::proc::wait_readable(&fd, timeout).map_err(|source| Error::Wait {
        id: s.id.clone(),
        source,
    })
}

/// The signal that stops container `s`.
fn stop_signal(root: &Root, s: &State) -> Result<Signal> {
    let config = detached::load_config(root, &s.id).map_err(Box::new)?;
    let name = config
        .options
        .stop_signal
        .clone()
        .or(config.exec.stop_signal.clone());
    Ok(match name {
        Some(n) => spec::parse_signal(&n)?,
        None => Signal::SIGTERM,
    })
}

/// `stop`: the stop signal, SIGKILL after `timeout` (default: the
/// container's `--stop-timeout`, 10 s), until it has ended.
pub fn stop(root: &Root, what: &str, timeout: Option<u64>) -> Result<State> {
    let s = records::find(root, what)?;
    if !s.detached {
        if is_live(&s) {
            let _ = send(Pid::from_raw(s.owner_pid), Signal::SIGTERM);
            wait_owner(&s, None)?;
        }
        return Ok(s);
    }
    if !running(&s) {
        return Ok(s);
    }
    let config = detached::load_config(root, &s.id).map_err(Box::new)?;
    let signal = stop_signal(root, &s)?;
    let timeout = Duration::from_secs(timeout.unwrap_or(config.options.stop_timeout));
    let Some(s) = records::update(root, &s.id, |s| s.life.stop_requested = true)? else {
        return Ok(s);
    };
    if in_container(s.life.pid, &s) {
        let _ = send(Pid::from_raw(s.life.pid), signal);
    }
    if !wait_owner(&s, Some(timeout))? {
        let now = records::load(root, &s.id).unwrap_or(s.clone());
        if in_container(now.life.pid, &now) {
            let _ = send(Pid::from_raw(now.life.pid), Signal::SIGKILL);
        }
        wait_owner(&s, None)?;
    }
    Ok(records::load(root, &s.id).unwrap_or(s))
}

/// `kill`: sends `signal` (default SIGKILL) to PID 1 of a running container.
pub fn kill(root: &Root, what: &str, signal: Option<&str>) -> Result<State> {
    let signal = match signal {
        Some(s) => spec::parse_signal(s)?,
        None => Signal::SIGKILL,
    };
    let s = records::find(root, what)?;
    if !running(&s) {
        return Err(Error::Lookup(LookupError::Unknown(format!(
            "{what} (it is not running)"
        ))));
    }
    if s.detached {
        if in_container(s.life.pid, &s) {
            let _ = send(Pid::from_raw(s.life.pid), signal);
        }
    } else {
        let _ = send(Pid::from_raw(s.owner_pid), signal);
    }
    Ok(s)
}

/// `wait`: blocks until the container has ended for good (its monitor is
/// gone), then returns its exit status.
pub fn wait(root: &Root, what: &str) -> Result<i32> {
    let s = records::find(root, what)?;
    wait_owner(&s, None)?;
    Ok(records::load(root, &s.id).map_or(s.life.exit_code, |s| s.life.exit_code))
}

/// `start`: starts an ended detached container again (its monitor anew).
pub fn start(root: &Root, what: &str) -> Result<State> {
    let s = records::find(root, what)?;
    if !s.detached {
        return Err(Error::Foreground(what.to_owned()));
    }
    if running(&s) {
        return Ok(s);
    }
    let _ = records::mark_dead(root, &s.id);
    records::update(root, &s.id, |s| s.life.stop_requested = false)?;
    detached::start(root, &s.id)?;
    Ok(s)
}

/// `restart`: `stop` (with `timeout`), then `start`.
pub fn restart(root: &Root, what: &str, timeout: Option<u64>) -> Result<State> {
    let s = stop(root, what, timeout)?;
    start(root, &s.id)
}

/// `rm`: removes an ended container (with `force`, kills it first): its
/// cgroup, record, config, logs and upper layer. Its mounts lived in its
/// own mount namespace and went with its last process.
pub fn remove(root: &Root, what: &str, force: bool) -> Result<State> {
    let s = records::find(root, what)?;
    if running(&s) {
        if !force {
            return Err(Error::Running(what.to_owned()));
        }
        stop(root, &s.id, Some(0))?;
    }
    let _lock = records::ContainerLock::take(root, &s.id)?;
    let s = records::load(root, &s.id).unwrap_or(s);
    if running(&s) {
        return Err(Error::Running(what.to_owned()));
    }
    s.cgroup.destroy()?;
    records::remove_dir(&root.container(&s.id))?;
    Ok(s)
}

/// `container prune`: removes every detached container that has ended;
/// returns their ids.
pub fn prune(root: &Root) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for s in records::all(root) {
        if s.detached && !running(&s) && remove(root, &s.id, false).is_ok() {
            removed.push(s.id);
        }
    }
    Ok(removed)
}
