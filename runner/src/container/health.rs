//! Health checks, run by a detached container's monitor while PID 1 runs:
//! every interval, the check's command runs in the container exactly as
//! `runner exec` runs one (it is `runner exec --timeout`, started by the
//! monitor): past the timeout, the check and every process it started in
//! the container are killed, so a hung check leaves nothing behind. Its exit code decides: 0 healthy, anything else a
//! failure; `retries` failures in a row make the container unhealthy, but
//! failures in the start period do not count. The status (`starting`,
//! `healthy`, `unhealthy`), the failing streak and the last five results
//! go to the record (`State.Health` in `inspect`, `(healthy)` in `ps`).
//!
//! The checker is a thread of the monitor, started once PID 1 runs and
//! joined before the monitor starts PID 1 again (the sandbox clones from a
//! single-threaded process only).

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::detached::{Config, HealthCheck};
use super::records;
use super::state::{now_ms, Health, HealthResult};
use crate::paths::Root;

/// Results kept in the record.
const KEPT: usize = 5;
/// Output kept per result.
const OUTPUT: usize = 4096;
/// How long past the timeout a check's `runner exec` may take to end.
const CLIENT_GRACE: Duration = Duration::from_secs(5);

/// A running checker; dropping it stops it (and waits for a check in flight).
pub struct Checker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checker {
    /// Starts checking container `config` if it has a health check.
    pub fn start(root: &Root, config: &Config) -> Option<Checker> {
        let check = config.health.clone()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let root = root.clone();
        let id = config.id.clone();
        let _ = records::update(&root, &id, |s| {
            s.life.health = Some(Health {
                status: "starting".into(),
                failing_streak: 0,
                log: s.life.health.take().map(|h| h.log).unwrap_or_default(),
            })
        });
        let thread = std::thread::spawn(move || {
            let began = Instant::now();
            let interval = Duration::from_millis(check.interval_ms.max(1));
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                let result = run_check(&root, &id, &check);
                let in_start_period =
                    began.elapsed() < Duration::from_millis(check.start_period_ms);
                let _ = records::update(&root, &id, |s| record(s, result, &check, in_start_period));
            }
        });
        Some(Checker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Folds one result into the record's health.
fn record(
    s: &mut super::state::State,
    result: HealthResult,
    check: &HealthCheck,
    in_start_period: bool,
) {
    let health = s.life.health.get_or_insert_with(Health::default);
    if result.exit_code == 0 {
        health.failing_streak = 0;
        health.status = "healthy".into();
    } else if !in_start_period {
        health.failing_streak += 1;
        if health.failing_streak >= check.retries.max(1) {
            health.status = "unhealthy".into();
        }
    }
    health.log.push(result);
    let extra = health.log.len().saturating_sub(KEPT);
    health.log.drain(..extra);
}

/// The check's argv: `CMD args...` as is, `CMD-SHELL cmd` through `/bin/sh -c`.
fn argv(test: &[String]) -> Vec<String> {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
        }
        Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
        _ => test.to_vec(),
    }
}

/// Runs the check once as `runner exec` and waits up to its timeout.
fn run_check(root: &Root, id: &str, check: &HealthCheck) -> HealthResult {
    let start = now_ms();
    let out_path = root.container(id).join("health.out");
    let failed = |output: String| HealthResult {
        start,
        end: now_ms(),
        exit_code: -1,
        output,
    };
    let (Ok(exe), Ok(out)) = (std::env::current_exe(), fs::File::create(&out_path)) else {
        return failed("cannot start the health check".into());
    };
    let Ok(err) = out.try_clone() else {
        return failed("cannot start the health check".into());
    };
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    let began = Instant::now();
    let spawned = Command::new(exe)
        .arg("--root")
        .arg(root.dir())
        .args([
            "exec",
            "--timeout",
            &format!("{}ms", timeout.as_millis()),
            id,
        ])
        .args(argv(&check.test))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(format!("starting the health check: {e}")),
    };
    // The client enforces the timeout; this only catches a client that hangs.
    let ended = crate::sys::proc::pidfd_open(child.id() as i32)
        .and_then(|fd| crate::sys::proc::wait_readable(&fd, Some(timeout + CLIENT_GRACE)))
        .unwrap_or(false);
    if !ended {
        let _ = child.kill();
    }
    let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
    if !ended || (code == super::exec::TIMED_OUT && began.elapsed() >= timeout) {
        let _ = fs::remove_file(&out_path);
        return failed(format!("Health check exceeded timeout ({timeout:?})"));
    }
    let mut output = String::new();
    if let Ok(f) = fs::File::open(&out_path) {
        let mut bytes = Vec::new();
        let _ = f.take(OUTPUT as u64).read_to_end(&mut bytes);
        output = String::from_utf8_lossy(&bytes).into_owned();
    }
    let _ = fs::remove_file(&out_path);
    HealthResult {
        start,
        end: now_ms(),
        exit_code: code,
        output,
    }
}
