//! The live view of a RUN on a terminal (`--progress auto` when stderr is
//! one): while the step runs, a painter process redraws, under the step's
//! line, its elapsed time and the last lines of its output, as BuildKit's
//! terminal display does; when the step ends the painter erases what it
//! drew, and the builder prints the step's `DONE` line.
//!
//! The painter is a fork of the builder (single-threaded then: the store is
//! closed before a RUN), made before the sandbox. It holds the terminal and
//! the read end of a pipe whose closing tells it to stop; it never enters
//! the container, and the pipe's other end is close-on-exec.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::sys::proc;

/// Output lines shown under the step.
const TAIL: usize = 6;

/// How much of the log end is read to find them.
const TAIL_BYTES: u64 = 8192;

/// A running painter; [`Painter::stop`] (or drop) erases it.
pub struct Painter {
    pid: Pid,
    stop: Option<OwnedFd>,
}

impl Painter {
    /// Starts painting step `n`'s output from `log`; `None` if it could not
    /// (the step then runs without the view).
    pub fn start(n: usize, log: &Path) -> Option<Painter> {
        crate::sandbox::wait_single_threaded(std::time::Duration::from_secs(2)).ok()?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
        match proc::fork().ok()? {
            ForkResult::Parent { child } => {
                drop(read);
                Some(Painter {
                    pid: child,
                    stop: Some(write),
                })
            }
            ForkResult::Child => {
                drop(write);
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                paint(n, log, &read);
                proc::exit_now(0)
            }
        }
    }

    /// Tells the painter to erase its lines, and waits until it has.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.stop.take().is_some() {
            let _ = waitpid(self.pid, None);
        }
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The painter's loop: redraw every 100 ms until `stop` closes, then erase.
fn paint(n: usize, log: &Path, stop: &OwnedFd) {
    let started = Instant::now();
    let mut drawn = 0;
    let mut err = std::io::stderr();
    loop {
        let mut fds = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
        let closed = matches!(poll(&mut fds, PollTimeout::from(100u16)), Ok(n) if n > 0);
        let mut frame = erase(drawn);
        drawn = 0;
        if !closed {
            let lines = tail(log);
            frame.push_str(&format!("#{n} {:.1}s\n", started.elapsed().as_secs_f64()));
            drawn += 1;
            for l in &lines {
                // One terminal row each: cut, and no control characters.
                let clean: String = l.chars().filter(|c| !c.is_control()).take(120).collect();
                frame.push_str(&format!("#{n} \x1b[2m{clean}\x1b[0m\n"));
                drawn += 1;
            }
        }
        let _ = err.write_all(frame.as_bytes());
        if closed {
            return;
        }
    }
}

/// Moves up `rows` rows, erasing them.
fn erase(rows: usize) -> String {
    "\x1b[1A\x1b[2K".repeat(rows)
}

/// The last [`TAIL`] lines of the log.
fn tail(log: &Path) -> Vec<String> {
    let Ok(mut f) = File::open(log) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
