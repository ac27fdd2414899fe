//! The per-container monitor (like podman's conmon; a fork of the `run -d`
//! or `start` command, see [`forked`], or `runner __monitor ID` by hand):
//! one small process per detached container, no central daemon. A crash of
//! one monitor loses only its own container.
//!
//! [`main`]: a new session (no terminal, away from the CLI that started
//! it); the record names it as owner (pid + start time); then, for each run:
//! build the spec from `config.json`, create the cgroup, start PID 1 through
//! the sandbox (so the monitor is its parent and reaps it), with its stdout
//! and stderr going to the log ([`super::logs::LogWriter`]); record the
//! host pid, then the exit code and times; apply the restart policy with
//! Docker's back-off (100 ms, doubled each restart, at most a minute, back
//! to 100 ms after a run of 10 s or more). `stop`, `rm -f` and `restart`
//! set `stop_requested` in the record first, so no policy restarts a
//! container stopped by hand. A health check runs from a thread of the
//! monitor while PID 1 runs ([`super::health`]).
//!
//! No async runtime and no store; once PID 1 runs, the pages setting up
//! touched are given back ([`Settle`]): an idle monitor stays under 2 MiB
//! of RSS.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::detached::{self, Config};
use super::logs::LogWriter;
use super::records;
use super::state::{self, Status};
use super::{build_spec, prepare_state_dir, Error, Result};
use crate::cgroup::{Cgroup, CgroupManager};
use crate::paths::Root;
use crate::sandbox::{self, Hooks, Launch};
use crate::seccomp;
use crate::sys::watch::DirWatch;

/// Shortest and longest wait before a restart, and the run length that resets it.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// Writes the monitor's one line for the command that started it, then
/// points stdout at /dev/null so that nothing more goes there.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// The monitor as forked by [`detached::start`]: its stdin is /dev/null,
/// its stdout `report_to` (the line for the command that started it), its
/// stderr `log`; then [`main`]. Returns the monitor's exit status.
pub(super) fn forked(
    root: &Root,
    id: &str,
    report_to: std::os::fd::OwnedFd,
    log: std::fs::File,
) -> i32 {
    let null = OpenOptions::new().read(true).open("/dev/null");
    if let Ok(null) = &null {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    let _ = nix::unistd::dup2(report_to.as_raw_fd(), 1);
    let _ = nix::unistd::dup2(log.as_raw_fd(), 2);
    drop((report_to, log, null));
    // Its command line is still the one of the command it was forked from:
    // its name (`ps -o comm`, /proc/PID/comm) says what it is.
    let _ = nix::sys::prctl::set_name(c"runner-monitor");
    match main(root, id) {
        Ok(code) => code,
        Err(e) => {
            report(&format!("error 125 {e}"));
            eprintln!("monitor: {e}");
            1
        }
    }
}

/// The monitor's life: runs container `id` until it ends for good. Returns
/// the monitor's exit status (0; non-zero only when it could not set up).
pub fn main(root: &Root, id: &str) -> Result<i32> {
    // A session of its own: no terminal can hang it up, the CLI's group
    // can be signalled without touching it.
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    let config = match detached::load_config(root, id) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("error 125 {e}"));
            return Ok(1);
        }
    };
    sandbox::block_forwarded_signals()?;
    let log = Arc::new(
        LogWriter::open(&detached::log_path(root, id), config.log).map_err(|source| {
            Error::Prepare {
                path: detached::log_path(root, id),
                source,
            }
        })?,
    );
    let mut reported = false;
    let mut backoff = BACKOFF_MIN;
    loop {
        let began = Instant::now();
        let (code, setup_error) = match run_once(root, &config, &log, &mut reported) {
            Ok(outcome) => outcome,
            Err(e) => (125, Some(e.to_string())),
        };
        let after = records::update(root, id, |s| {
            s.life.status = Status::Exited;
            s.life.pid = 0;
            s.life.exit_code = code;
            s.life.finished_at = state::now_ms();
            if let Some(e) = &setup_error {
                s.life.error = e.clone();
            }
        })?;
        if !reported {
            let message = setup_error.unwrap_or_else(|| "the container did not start".into());
            report(&format!("error {code} {}", message.replace('\n', " ")));
            break;
        }
        let Some(after) = after else { break };
        if after.life.stop_requested
            || setup_error.is_some()
            || !config.restart.restarts(code, after.life.restart_count)
        {
            break;
        }
        if began.elapsed() >= BACKOFF_RESET {
            backoff = BACKOFF_MIN;
        }
        records::update(root, id, |s| s.life.status = Status::Restarting)?;
        if !wait_unless_stopped(root, id, backoff) {
            records::update(root, id, |s| s.life.status = Status::Exited)?;
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        records::update(root, id, |s| {
            s.life.restart_count += 1;
            s.life.status = Status::Running;
        })?;
    }
    records::update(root, id, |s| {
        s.owner_pid = 0;
        s.owner_start = 0;
    })?;
    Ok(0)
}

/// Waits out `wait`; false as soon as a stop is requested. Wakes on a
/// change of the container's directory (`stop` rewrites the record), not
/// on a timer.
fn wait_unless_stopped(root: &Root, id: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let Ok(watch) = DirWatch::new(&root.container(id)) else {
        return false;
    };
    loop {
        if records::load(root, id).is_none_or(|s| s.life.stop_requested) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        if watch.wait(None, Some(left)).is_err() {
            std::thread::sleep(left);
        }
    }
}

/// One run of PID 1, from a fresh cgroup to its exit: (exit status, why it
/// did not start). The first run also records the monitor as the owner
/// (one write of the record fewer before `run -d` returns).
fn run_once(
    root: &Root,
    config: &Config,
    log: &Arc<LogWriter>,
    reported: &mut bool,
) -> Result<(i32, Option<String>)> {
    let first = !*reported;
    let id = &config.id;
    let spec = build_spec(
        &config.options,
        &config.exec,
        &config.command,
        config.id.clone(),
    )?;
    let bpf = match &spec.seccomp {
        Some(profile) => Some(seccomp::cached_filter(root, profile, &spec.capabilities)?),
        None => None,
    };
    let cgroup = Cgroup::for_container(Path::new("/sys/fs/cgroup"), id)?;
    cgroup.create(&spec.limits)?;
    let dir = root.container(id);
    // A `volatile` overlay leaves work/work/incompat/volatile behind, which
    // makes the next mount on the same work dir fail: start each run with
    // a fresh one (the upper layer, the container's changes, stays).
    let work = dir.join("work");
    if work.join("work").exists() {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).map_err(|source| Error::Prepare { path: work, source })?;
    }
    prepare_state_dir(&dir, &spec, config.layers.len())?;
    let me = std::process::id() as i32;
    let owner_start = state::process_start_time(me).unwrap_or(0);
    let connection = super::join_network(root, &spec, &config.options.net, Some(&config.exec))?;
    let connect = |pid: i32, netns: std::os::fd::BorrowedFd<'_>| {
        super::plumb(connection.as_ref(), pid, netns)
    };
    records::update(root, id, |s| {
        if first {
            s.owner_pid = me;
            s.owner_start = owner_start;
            s.owner_boot = state::boot_id();
            s.life.status = Status::Running;
            s.life.stop_requested = false;
        }
        s.life.started_at = state::now_ms();
        s.life.oom_killed = false;
        s.life.error.clear();
        s.cgroup = cgroup.clone();
    })?;
    // Started once PID 1 runs (the sandbox clones single-threaded), joined
    // when this returns.
    let health = std::cell::RefCell::new(None);
    let settle = std::cell::RefCell::new(None);
    let started = |pid: i32| {
        let _ = records::update(root, id, |s| s.life.pid = pid);
        if first {
            report("ok");
        }
        *health.borrow_mut() = super::health::Checker::start(root, config);
        *settle.borrow_mut() = Settle::start();
    };
    let outcome = sandbox::run_with(
        &Launch {
            spec: &spec,
            layers: &config.layers,
            state_dir: &dir,
            seccomp_bpf: bpf.as_deref(),
            cgroup: &cgroup,
        },
        &Hooks {
            output: Some(log.clone()),
            started: Some(&started),
            network: Some(&connect),
        },
    );
    drop(health.take());
    drop(settle.take());
    // slirp4netns (rootless) is stopped and waited for before the exit is recorded.
    drop(connection);
    if outcome.as_ref().is_ok_and(|o| o.setup_error.is_none()) {
        *reported = true;
    }
    let oom = cgroup.oom_killed();
    let destroyed = cgroup.destroy();
    let outcome = outcome?;
    destroyed?;
    if oom {
        records::update(root, id, |s| s.life.oom_killed = true)?;
    }
    Ok((outcome.code, outcome.setup_error))
}

/// How long after PID 1 starts the monitor gives back its setup's pages.
const SETTLE_DELAY: Duration = Duration::from_millis(300);

/// Setting a container up touches most of the runner's code once (options,
/// JSON, the sandbox, starting the log relay): [`SETTLE_DELAY`] after PID 1
/// starts, once the monitor waits, a thread gives those clean pages back
/// ([`crate::sys::mem::drop_clean_file_pages`]), so the monitor's RSS is
/// what its waiting loop uses. Dropped when the run ends: the thread is
/// told to stop and joined (the next run's sandbox needs one thread).
struct Settle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Settle {
    fn start() -> Option<Settle> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("settle".into())
            .stack_size(64 << 10)
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SETTLE_DELAY)
                {
                    let _ = crate::sys::mem::drop_clean_file_pages();
                    // Waits for the end of the run: exiting now would fault
                    // the thread-exit code back in.
                    let _ = stopped.recv();
                }
            })
            .ok()?;
        Some(Settle {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
