//! `exec`: one more process in a running container, as confined as its
//! PID 1.
//!
//! The parent enters the container's PID namespace for its children only
//! (`setns` of a PID namespace never moves the caller), `clone`s, and
//! returns to its own (it could not start threads otherwise); the
//! child joins every other namespace of PID 1 that differs from the
//! runner's (user first, then mount, UTS, IPC, network and cgroup), waits
//! while the parent puts it in the container's cgroup, and ends the way PID
//! 1 did ([`super::child::become_workload`], the same code): a session and
//! stdio of its own, the user and working directory, every other
//! descriptor closed, the bounding set, the capabilities, `no_new_privs`
//! and the seccomp filter, then exec of the command. The parent relays the
//! stdio and forwards signals, as for `run`, and returns the exit status.
//!
//! Rootless, the runner cannot return to its own PID namespace (that takes
//! root in the initial user namespace), so the child enters the
//! container's for its own children and forks: the grandchild becomes the
//! command, the child stays outside and forwards signals to it and its
//! exit status to the runner.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::waitpid;

use super::child::{self, ChildError, Context};
use super::stdio::{ChildStreams, Streams};
use super::{forwarded_and_chld, parse_report, supervise, sys, Limit, Outcome, Result};
use crate::cgroup::{Cgroup, CgroupManager};
use crate::spec::ContainerSpec;

/// What `exec` joins and runs.
pub struct Join<'a> {
    /// The command, its environment, user, working directory, stdio and
    /// the container's capabilities and `no_new_privs`.
    pub spec: &'a ContainerSpec,
    /// Host pid of the container's PID 1.
    pub pid: i32,
    /// The container's compiled seccomp filter, unless unconfined.
    pub seccomp_bpf: Option<&'a [u8]>,
    /// The container's cgroup.
    pub cgroup: &'a Cgroup,
    /// Past this, the command and every process it started are killed
    /// ([`super::reap::kill_started`]).
    pub timeout: Option<std::time::Duration>,
}

/// Namespaces joined, in order (user first: it grants the rights for the others).
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// PID 1's namespace `kind`, unless the runner is already in it.
fn namespace(pid: i32, kind: &str) -> std::io::Result<Option<OwnedFd>> {
    let theirs = fs::File::open(format!("/proc/{pid}/ns/{kind}"))?;
    let mine = fs::metadata(format!("/proc/self/ns/{kind}"))?;
    let meta = theirs.metadata()?;
    if meta.ino() == mine.ino() && meta.dev() == mine.dev() {
        return Ok(None);
    }
    Ok(Some(theirs.into()))
}

struct ExecChild<'a> {
    join: &'a Join<'a>,
    namespaces: Vec<(OwnedFd, CloneFlags)>,
    sync_r: i32,
    err_w: i32,
    streams: ChildStreams,
    /// Rootless: the container's PID namespace, entered here (see the module doc).
    pid_ns: Option<&'a OwnedFd>,
}

fn child_main(ctx: &ExecChild<'_>) -> isize {
    let ChildError(code, message) = match child_setup(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let report = format!("{code}\n{message}");
    sys::proc::report_and_exit(ctx.err_w, report.as_bytes(), code)
}

fn child_setup(ctx: &ExecChild<'_>) -> Result<child::Never, ChildError> {
    sys::proc::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    for (fd, kind) in &ctx.namespaces {
        nix::sched::setns(fd, *kind).ctx(|| format!("join the container's {kind:?}"))?;
    }
    let mut go = [0u8; 1];
    if nix::unistd::read(ctx.sync_r, &mut go) != Ok(1) {
        return Err(ChildError(125, "runner went away before exec".into()));
    }
    if let Some(pid_ns) = ctx.pid_ns {
        nix::sched::setns(pid_ns, CloneFlags::CLONE_NEWPID)
            .ctx(|| "join the container's PID namespace".into())?;
        match sys::proc::fork().ctx(|| "fork into the container's PID namespace".into())? {
            nix::unistd::ForkResult::Child => {}
            nix::unistd::ForkResult::Parent { child } => forward_until_exit(child, ctx.err_w),
        }
    }
    let spec = ctx.join.spec;
    // Never the runner's own descriptors: --preserve-fds is for PID 1 only.
    child::become_workload(spec, &ctx.streams, ctx.join.seccomp_bpf, ctx.err_w, 0)
}

/// The rootless exec child once it forked the command: forwards the
/// runner's signals to it and ends with its status.
fn forward_until_exit(command: nix::unistd::Pid, err_w: i32) -> ! {
    // The command reports its own setup errors; exec closes its copy.
    let _ = nix::unistd::close(err_w);
    let signals = forwarded_and_chld();
    loop {
        match waitpid(command, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => sys::proc::exit_now(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                sys::proc::exit_now(128 + sig as i32)
            }
            Err(_) => sys::proc::exit_now(125),
            Ok(_) => {}
        }
        if let Some(sig) = sys::proc::sigtimedwait(&signals, std::time::Duration::from_secs(1)) {
            if sig != Signal::SIGCHLD {
                let _ = kill(command, sig);
            }
        }
    }
}

/// Runs `join.spec`'s command in the running container and waits for it.
/// The process must be single-threaded (see [`super::wait_single_threaded`]).
pub fn exec(join: &Join<'_>) -> Result<Outcome> {
    super::wait_single_threaded(super::THREAD_EXIT_WAIT)?;
    let spec = join.spec;
    let pid_ns = namespace(join.pid, "pid").map_err(|e| super::Error::Join(join.pid, e))?;
    let mut namespaces = Vec::new();
    for (kind, flag) in NAMESPACES {
        if let Some(fd) = namespace(join.pid, kind).map_err(|e| super::Error::Join(join.pid, e))? {
            namespaces.push((fd, flag));
        }
    }
    let (sync_r, sync_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(super::sys("pipe2"))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(super::sys("pipe2"))?;
    let streams = Streams::open(spec.tty, spec.stdin).map_err(super::sys("open stdio"))?;
    let signals = forwarded_and_chld();
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old_mask))
        .map_err(super::sys("sigprocmask"))?;
    // For the clone only: a process whose children go to another PID
    // namespace cannot start threads (the stdio relay), so the runner's own
    // comes back right after.
    let own_pid_ns =
        fs::File::open("/proc/self/ns/pid").map_err(|e| super::Error::Join(join.pid, e))?;
    let rootless = crate::rootless::active();
    if let Some(fd) = pid_ns.as_ref().filter(|_| !rootless) {
        nix::sched::setns(fd, CloneFlags::CLONE_NEWPID).map_err(super::sys("setns pid"))?;
    }
    let ctx = ExecChild {
        pid_ns: pid_ns.as_ref().filter(|_| rootless),
        join,
        namespaces,
        sync_r: sync_r.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        streams: streams.child(),
    };
    let mut stack = vec![0u8; 1 << 20];
    let pid = sys::proc::clone_child(
        Box::new(|| child_main(&ctx)),
        &mut stack,
        CloneFlags::empty(),
    )
    .map_err(super::sys("clone"));
    if pid_ns.is_some() && !rootless {
        nix::sched::setns(&own_pid_ns, CloneFlags::CLONE_NEWPID)
            .map_err(super::sys("setns pid"))?;
    }
    let pid = pid?;
    drop(sync_r);
    drop(err_w);
    let restore = || {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    };
    if let Err(e) = join.cgroup.add_process(pid.as_raw()) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        restore();
        return Err(e.into());
    }
    let _ = nix::unistd::write(&sync_w, b"1");
    drop(sync_w);
    let mut report = Vec::new();
    let _ = fs::File::from(err_r).read_to_end(&mut report);
    if let Some((code, message)) = parse_report(&String::from_utf8_lossy(&report)) {
        let _ = waitpid(pid, None);
        restore();
        return Ok(Outcome {
            code,
            setup_error: Some(message),
            timed_out: false,
        });
    }
    let relay = streams.relay(spec.stdin, None);
    let timed_out = std::cell::Cell::new(false);
    let kill_all = || {
        timed_out.set(true);
        super::reap::kill_started(join.cgroup, pid.as_raw());
    };
    let limit = join.timeout.map(|t| Limit {
        at: std::time::Instant::now() + t,
        kill: &kill_all,
    });
    let code = supervise(pid, spec, &signals, relay.master(), limit);
    relay.finish();
    restore();
    Ok(Outcome {
        code,
        setup_error: None,
        timed_out: timed_out.get(),
    })
}
