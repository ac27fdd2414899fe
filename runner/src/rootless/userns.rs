//! The user's rootless user namespace, shared by every rootless command.
//!
//! ```text
//! <runtime dir>/
//!   userns.lock      flock: held while the namespace is looked up or made
//!   userns.pid       "<pid> <start time>" of the pause process holding it
//! ```
//!
//! A command takes the lock, and joins (`setns`) the namespace of the pause
//! process named in `userns.pid` if that process still lives (same start
//! time, so a reused pid is not mistaken for it). Otherwise it `clone`s a
//! new pause process in a new user namespace, has `newuidmap` and
//! `newgidmap` write its maps (container 0 -> the user's uid and gid, 1..
//! -> the subordinate ranges), records it and joins it. The pause process
//! holds nothing of the runner's (every descriptor closed, a session of its
//! own) and only waits for a signal; killing it is harmless: the next
//! command makes a new namespace (containers still running keep theirs).

use std::fs::{self, File};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;

use super::subid::{self, Range};
use super::{Error, Result};
use crate::sys;

/// The pause process's name, as `ps` shows it.
pub const PAUSE_NAME: &std::ffi::CStr = c"strata-userns";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Joins the user namespace recorded in `runtime`, or makes it (see the
/// module doc). The process must be single-threaded (`setns` of a user
/// namespace requires it).
pub fn join_or_create(runtime: &Path) -> Result<()> {
    let lock_path = runtime.join("userns.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock", &lock_path)(e.into()))?;
    let pid_path = runtime.join("userns.pid");
    if let Some(pid) = recorded_pause(&pid_path) {
        if let Ok(ns) = File::open(format!("/proc/{pid}/ns/user")) {
            return nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER)
                .map_err(|e| Error::UserNs(format!("joining the namespace of PID {pid}: {e}")));
        }
    }
    let pid = spawn_pause()?;
    let made = map_ids(pid).and_then(|()| {
        let text = format!("{} {}\n", pid, start_time(pid.as_raw()).unwrap_or(0));
        let tmp = runtime.join("userns.pid.tmp");
        fs::write(&tmp, text).map_err(io("write", &tmp))?;
        fs::rename(&tmp, &pid_path).map_err(io("rename", &pid_path))?;
        let ns_path = format!("/proc/{pid}/ns/user");
        let ns = File::open(&ns_path).map_err(io("open", Path::new(&ns_path)))?;
        nix::sched::setns(ns, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| Error::UserNs(format!("joining the new user namespace: {e}")))
    });
    if made.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        let _ = fs::remove_file(&pid_path);
    }
    made
}

/// The pause process recorded at `path`, if it still runs (a zombie, killed
/// but not reaped yet, no longer counts).
fn recorded_pause(path: &Path) -> Option<i32> {
    let text = fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let pid: i32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let alive = after_name
        .first()
        .is_some_and(|state| *state != "Z" && *state != "X");
    (alive && after_name.get(19)?.parse::<u64>().ok()? == start).then_some(pid)
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Starts the pause process in a new user namespace, not mapped yet.
fn spawn_pause() -> Result<Pid> {
    let mut stack = vec![0u8; 64 * 1024];
    sys::proc::clone_child(Box::new(pause_main), &mut stack, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| Error::UserNs(format!("clone(CLONE_NEWUSER): {e}")))
}

/// The pause process: let go of everything of the runner's, then wait forever.
fn pause_main() -> isize {
    let _ = nix::unistd::setsid();
    let _ = nix::unistd::chdir("/");
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let _ = sys::fd::close_fds_except(3, -1);
    let _ = nix::sys::prctl::set_name(PAUSE_NAME);
    sys::proc::reset_signal_dispositions();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    loop {
        nix::unistd::pause();
    }
}

/// Writes the pause process's uid and gid maps with `newuidmap` and `newgidmap`.
fn map_ids(pid: Pid) -> Result<()> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let subuid = subid::lookup(Path::new("/etc/subuid"), &name, uid.as_raw())?;
    let subgid = subid::lookup(Path::new("/etc/subgid"), &name, uid.as_raw())?;
    newidmap("newuidmap", pid, uid.as_raw(), subuid)?;
    newidmap("newgidmap", pid, gid.as_raw(), subgid)
}

fn newidmap(tool: &str, pid: Pid, own: u32, range: Range) -> Result<()> {
    let args = [
        pid.to_string(),
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.start.to_string(),
        range.count.to_string(),
    ];
    let out = Command::new(tool).args(&args).output().map_err(|e| {
        Error::UserNs(format!(
            "running {tool}: {e} (install Debian's `uidmap` package)"
        ))
    })?;
    if !out.status.success() {
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if message.is_empty() {
            message = out.status.to_string();
        }
        return Err(Error::UserNs(format!(
            "{tool} {}: {message}",
            args.join(" ")
        )));
    }
    Ok(())
}
