//! Killing what one `exec` started, when it runs past its timeout (a health
//! check's, or `exec --timeout`): the process itself and every process of
//! the container's cgroup in its session (the exec'd process leads one of
//! its own) or descended from it. That covers a shell's children and
//! pipelines, and their orphans that the container's PID 1 inherited (they
//! keep the session). Only a process that both left the session (`setsid`)
//! and lost its parent escapes.
//!
//! Rounds of look-and-kill, until a round finds nothing alive: a process
//! forked between a round's look and its kill is seen by the next round
//! (it is in the same session), and SIGKILL cannot be caught or ignored.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;

/// Rounds before giving up (a process forking without pause cannot outrun
/// SIGKILL for long).
const ROUNDS: usize = 200;
/// Pause between rounds, while the kernel tears killed processes down.
const PAUSE: Duration = Duration::from_millis(2);

/// (pid, parent pid, session id) of a live process; `None` for a zombie or
/// one that is gone. Ids are as this process sees them (the host's).
fn stat(pid: i32) -> Option<(i32, i32, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 2..].split(' ');
    let state = fields.next()?;
    if state.starts_with(['Z', 'X']) {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some((pid, ppid, session))
}

/// The live processes of the cgroup.
fn members(cgroup: &Cgroup) -> Vec<(i32, i32, i32)> {
    let Some(dir) = cgroup.paths().into_iter().next() else {
        return Vec::new();
    };
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter_map(stat)
        .collect()
}

/// The processes `leader` started: itself, its session, its descendants.
fn started_by(leader: i32, members: &[(i32, i32, i32)]) -> BTreeSet<i32> {
    let mut found: BTreeSet<i32> = members
        .iter()
        .filter(|(pid, _, sid)| *pid == leader || *sid == leader)
        .map(|(pid, _, _)| *pid)
        .collect();
    found.insert(leader);
    loop {
        let before = found.len();
        for (pid, ppid, _) in members {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// SIGKILLs `leader` (a child of this process, not yet reaped) and every
/// process of `cgroup` it started, until none is left alive.
pub(super) fn kill_started(cgroup: &Cgroup, leader: i32) {
    for _ in 0..ROUNDS {
        let members = members(cgroup);
        let mut alive = 0;
        for pid in started_by(leader, &members) {
            let live = members.iter().any(|(p, _, _)| *p == pid) || stat(pid).is_some();
            if live {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                alive += 1;
            }
        }
        if alive == 0 {
            return;
        }
        std::thread::sleep(PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_descendants_are_found_and_others_spared() {
        // (pid, ppid, sid): 10 leads; 11 its child; 12 orphaned to PID 1 (1)
        // but still in its session; 13 a grandchild that left the session;
        // 20 the container's own, spared.
        let members = [
            (1, 0, 1),
            (10, 5, 10),
            (11, 10, 10),
            (12, 1, 10),
            (13, 11, 13),
            (20, 1, 20),
        ];
        let found: Vec<i32> = started_by(10, &members).into_iter().collect();
        assert_eq!(found, [10, 11, 12, 13]);
    }
}
