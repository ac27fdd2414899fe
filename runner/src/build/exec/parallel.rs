//! Independent stages in parallel. Stages of the target's that need no
//! other stage are built at once, each by a forked copy of the builder (a
//! process of its own: a RUN's sandbox needs a single-threaded process).
//! A copy writes its steps into the build cache, marked with this build's
//! session (so that `--no-cache` builds take them too), reports its counts
//! through a pipe, and leaves. The builder then walks every stage in order
//! as before; the stages the copies built are cache hits it does not print
//! again. A copy that fails changes nothing: the builder builds that stage
//! itself and reports its error as usual.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::Builder;
use crate::sys::proc;

/// A copy of the builder at work on one stage.
struct Copy {
    pid: Pid,
    report: OwnedFd,
}

impl Builder<'_> {
    /// The stages of `order` (but `target`) that need no other stage, when
    /// there are two or more of them: those worth building side by side.
    pub(super) fn independent(&self, order: &[usize], target: usize) -> Vec<usize> {
        let alone: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&s| s != target)
            .filter(|&s| {
                let mut needs = Vec::new();
                self.needed(s, &mut needs).is_ok() && needs == [s]
            })
            .collect();
        if alone.len() >= 2 {
            alone
        } else {
            Vec::new()
        }
    }

    /// Builds `stages` in forked copies, as many at once as there are
    /// CPUs (at least two); returns the stages whose copy succeeded. In
    /// plain progress, a stage left to the builder says why.
    pub(super) fn build_in_copies(&mut self, stages: &[usize], order: &[usize]) -> Vec<usize> {
        let width = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let mut running: HashMap<usize, Copy> = HashMap::new();
        let mut built = Vec::new();
        let mut queue = stages.iter().copied();
        loop {
            while running.len() < width {
                let Some(s) = queue.next() else { break };
                match self.spawn_copy(s, order) {
                    Ok(c) => {
                        running.insert(s, c);
                    }
                    Err(why) if self.plain() => {
                        super::say(&format!("stage {s} is built after the others ({why})"));
                    }
                    Err(_) => {}
                }
            }
            let Some(&s) = running.keys().next() else {
                break;
            };
            let c = running.remove(&s).expect("present");
            match wait_copy(c) {
                Ok((ran, cached)) => {
                    self.ran += ran;
                    self.cached += cached;
                    built.push(s);
                }
                Err(why) if self.plain() => {
                    let why = why.lines().next().unwrap_or_default().to_owned();
                    super::say(&format!("stage {s} is built after the others ({why})"));
                }
                Err(_) => {}
            }
        }
        built
    }

    /// Forks a copy that builds stage `s` and leaves.
    fn spawn_copy(&mut self, s: usize, order: &[usize]) -> Result<Copy, String> {
        self.close_store();
        crate::sandbox::wait_single_threaded(std::time::Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        match proc::fork().map_err(|e| format!("fork: {e}"))? {
            ForkResult::Parent { child } => {
                drop(write);
                Ok(Copy {
                    pid: child,
                    report: read,
                })
            }
            ForkResult::Child => {
                drop(read);
                // The copy dies with the builder (killed, it cannot clean up).
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                self.live = false; // several painters would draw over each other
                self.step = self.first_step(s, order);
                self.ran = 0;
                self.cached = 0;
                let outcome = self.run_stage(s);
                if let Some(ctx) = &self.context {
                    let _ = ctx.save(); // the builder's walk then reads nothing again
                }
                self.close_store();
                let (report, code) = match outcome {
                    Ok(_) => (format!("{} {}", self.ran, self.cached), 0),
                    Err(e) => (e.to_string(), 1),
                };
                proc::report_and_exit(write.as_raw_fd(), report.as_bytes(), code)
            }
        }
    }

    /// The number of the step before stage `s`'s first, counted as the
    /// builder counts (one for FROM, one per instruction), so that the
    /// copies' step numbers do not collide.
    pub(super) fn first_step(&self, s: usize, order: &[usize]) -> usize {
        order
            .iter()
            .take_while(|&&o| o != s)
            .map(|&o| 1 + self.stages[o].body.len())
            .sum()
    }
}

/// Waits for a copy: its counts (RUN steps run, steps cached), or why it failed.
fn wait_copy(c: Copy) -> Result<(usize, usize), String> {
    let mut report = String::new();
    let _ = File::from(c.report).read_to_string(&mut report);
    let status = loop {
        match waitpid(c.pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    match status {
        Ok(WaitStatus::Exited(_, 0)) => {
            let mut counts = report.split(' ').filter_map(|n| n.parse().ok());
            Ok((counts.next().unwrap_or(0), counts.next().unwrap_or(0)))
        }
        Ok(WaitStatus::Exited(..)) => Err(report),
        other => Err(format!("{other:?}")),
    }
}
