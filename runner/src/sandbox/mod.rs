//! The sandbox: starts one container process fully isolated, supervises it,
//! and reports how it ended. It knows nothing about registries or images:
//! it gets layer directories, a state directory and a [`ContainerSpec`].
//!
//! Parent side (this module): block the forwarded signals, `clone` the child into new
//! mount, PID, UTS, IPC, network (and user) namespaces, put it in its cgroup,
//! write its id maps, release it, then forward signals (the stop signal with
//! a SIGKILL deadline for SIGTERM) until it exits.
//!
//! Child side ([`child`]), in order (without a user namespace the cgroup step comes
//! just before `pivot_root`, so the root filesystem is built while the
//! parent moves the child into its cgroup): not dumpable; wait for the
//! parent's go, new cgroup namespace; private mounts; the root filesystem
//! ([`rootfs`]: overlayfs of the layers, living only in the container's
//! mount namespace so nothing is left mounted on the host if the runner
//! dies; volumes and tmpfs; `/etc/{hostname,hosts,resolv.conf}`; `/proc`,
//! read-only `/sys`, a minimal `/dev`; Docker's masked and read-only paths;
//! the container's cgroups, read-only); hostname and `lo`; `pivot_root` and
//! detach of the old root; a new session with its stdio ([`stdio`]); user
//! and working directory; every descriptor but the error pipe closed;
//! Landlock ([`landlock`]: files beneath the container's root only);
//! bounding set, groups, user switch, capabilities (none inheritable),
//! `no_new_privs`, seccomp; then exec: the workload itself, or under
//! `--init` the small init program of [`init`], from a sealed memfd. Either
//! way PID 1 is a fresh image holding nothing of the runner's.
//!
//! Files: this module is the parent side; [`child`] is the child side up to
//! exec; [`exec`] starts one more process in a running container (`runner
//! exec`), ending through the same child code, with [`overlay`] and [`rootfs`] (its mounts), [`stdio`] (both
//! ends of the container's stdio) and [`init`]. Every raw (`unsafe`) system
//! call of the sandbox is a small safe wrapper in [`crate::sys`]; nothing
//! here calls libc.

mod child;
mod exec;
mod init;
pub mod landlock;
mod overlay;
mod reap;
mod rootfs;
mod stdio;

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::{Cgroup, CgroupManager};
use crate::spec::{ContainerSpec, Network};
use crate::sys;
use child::ChildContext;
pub use exec::{exec, Join};
use stdio::Streams;
pub use stdio::{OutputSink, Stream};

/// Errors on the runner's side of starting or supervising a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A syscall in the parent failed.
    #[error("{call}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// OS error.
        source: nix::Error,
    },
    /// The cgroup could not be joined.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::Error),
    /// Other threads outlived the wait for them to exit: `clone` from a
    /// multi-threaded process could deadlock the child (malloc locks held by
    /// a thread that does not exist in it).
    #[error("refusing to start the container: the runner still has {threads} threads after {waited:?} (was the image store closed?)")]
    MultiThreaded {
        /// Threads counted last.
        threads: usize,
        /// How long they were given to exit.
        waited: Duration,
    },
    /// The process's threads could not be counted.
    #[error("counting threads in /proc/self/task: {0}")]
    CountThreads(io::Error),
    /// The namespaces of a running container could not be opened (`exec`).
    #[error("joining the container (PID {0}): {1}")]
    Join(i32, io::Error),
    /// Connecting the container's network namespace failed.
    #[error("connecting the container to its network: {0}")]
    Network(String),
    /// Writing the user-namespace id maps failed.
    #[error("writing {path}: {source}")]
    IdMap {
        /// The map file.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn sys(call: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |source| Error::Sys { call, source }
}

/// What the sandbox needs besides the spec.
pub struct Launch<'a> {
    /// The container to start.
    pub spec: &'a ContainerSpec,
    /// Unpacked layer directories, base first.
    pub layers: &'a [PathBuf],
    /// Holds `upper/`, `work/` and the `rootfs/` mount point.
    pub state_dir: &'a Path,
    /// Compiled seccomp filter, unless unconfined.
    pub seccomp_bpf: Option<&'a [u8]>,
    /// The container's cgroup (already created).
    pub cgroup: &'a Cgroup,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status as a shell reports it: the code, or 128+signal.
    pub code: i32,
    /// Set when the container never ran its command (125/126/127).
    pub setup_error: Option<String>,
    /// An `exec` ran past its timeout: it and what it started were killed.
    pub timed_out: bool,
}

/// Signals the runner forwards to the container.
const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

fn forwarded_and_chld() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks the signals the runner forwards, so that one arriving while the
/// container is being set up is delivered to it once it runs instead of
/// killing the runner mid-setup.
pub fn block_forwarded_signals() -> Result<()> {
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_and_chld()), None)
        .map_err(sys("sigprocmask"))
}

/// How long [`wait_single_threaded`] gives exiting threads to disappear.
pub const THREAD_EXIT_WAIT: Duration = Duration::from_secs(1);

fn thread_count() -> Result<usize> {
    Ok(fs::read_dir("/proc/self/task")
        .map_err(Error::CountThreads)?
        .count())
}

/// Returns once this process is single-threaded, as a raw `clone` requires.
/// Threads that were told to end (the image store's, once it is closed) may
/// still be exiting, so their disappearance is awaited for up to `wait`;
/// after that this fails rather than risk a deadlocked child.
pub fn wait_single_threaded(wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let threads = thread_count()?;
        if threads == 1 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::MultiThreaded {
                threads,
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// See [`Hooks::network`]: (child's host pid, its network namespace).
pub type NetworkHook<'a> = dyn Fn(i32, BorrowedFd<'_>) -> Result<(), String> + 'a;

/// What a caller other than the foreground `run` hooks into: a detached
/// container's monitor sends the output to its log and records PID 1.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Where the container's output goes instead of the runner's stdout and stderr.
    pub output: Option<std::sync::Arc<dyn OutputSink>>,
    /// Called with PID 1's host pid once it runs the workload.
    pub started: Option<&'a dyn Fn(i32)>,
    /// Called with the child's host pid and its network namespace (a
    /// descriptor the child sends, since a rootless runner may not open
    /// `/proc/<pid>/ns/net` of a child that is not dumpable) after `clone`,
    /// before it is let go: connects the new namespace (`--network
    /// bridge`). An error ends the child and the run.
    pub network: Option<&'a NetworkHook<'a>>,
}

/// Starts the container and supervises it until it exits. The process must
/// be single-threaded (see [`wait_single_threaded`]).
pub fn run(launch: &Launch<'_>) -> Result<Outcome> {
    run_with(launch, &Hooks::default())
}

/// [`run`], with the [`Hooks`] a monitor needs.
pub fn run_with(launch: &Launch<'_>, hooks: &Hooks<'_>) -> Result<Outcome> {
    wait_single_threaded(THREAD_EXIT_WAIT)?;
    let spec = launch.spec;
    let (sync_r, sync_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    // Carries id-mapped layer mounts to a child in a user namespace.
    let (fd_parent, fd_child) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;
    let streams = Streams::open(spec.tty, spec.stdin).map_err(sys("open stdio"))?;
    // The child compares its cgroups with these to find its own.
    let runner_cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let signals = forwarded_and_chld();
    let mut old_mask = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old_mask))
        .map_err(sys("sigprocmask"))?;

    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network != Network::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if spec.userns.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let child_ctx = ChildContext {
        launch,
        sync_r: sync_r.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        layer_fds: fd_child.as_raw_fd(),
        send_netns: hooks.network.is_some(),
        streams: streams.child(),
        console: streams.console(),
        runner_cgroups: &runner_cgroups,
    };
    let mut stack = vec![0u8; 1 << 20];
    let pid = sys::proc::clone_child(Box::new(|| child::main(&child_ctx)), &mut stack, flags)
        .map_err(sys("clone"))?;
    drop(sync_r);
    drop(err_w);
    drop(fd_child);

    let prepared = prepare_child(launch, pid, &fd_parent).and_then(|()| match hooks.network {
        Some(connect) => {
            let netns = sys::fd::recv_fd(fd_parent.as_raw_fd())
                .map_err(|e| Error::Network(format!("receiving its network namespace: {e}")))?
                .ok_or_else(|| Error::Network("the child sent no network namespace".into()))?;
            connect(pid.as_raw(), netns.as_fd()).map_err(Error::Network)
        }
        None => Ok(()),
    });
    if let Err(e) = prepared {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        // The child may have failed first, on its own: its report says why.
        let mut report = String::new();
        let _ = fs::File::from(err_r).read_to_string(&mut report);
        if let Some((code, message)) = parse_report(&report) {
            let _ =
                nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            return Ok(Outcome {
                code,
                setup_error: Some(message),
                timed_out: false,
            });
        }
        return Err(e);
    }
    let _ = nix::unistd::write(&sync_w, b"1");
    drop(sync_w);

    let mut report = Vec::new();
    let _ = fs::File::from(err_r).read_to_end(&mut report);
    if let Some((code, message)) = parse_report(&String::from_utf8_lossy(&report)) {
        let _ = waitpid(pid, None);
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
        return Ok(Outcome {
            code,
            setup_error: Some(message),
            timed_out: false,
        });
    }

    if let Some(started) = hooks.started {
        started(pid.as_raw());
    }
    let relay = streams.relay(spec.stdin, hooks.output.clone());
    let code = supervise(pid, spec, &signals, relay.master(), None);
    relay.finish();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    Ok(Outcome {
        code,
        setup_error: None,
        timed_out: false,
    })
}

/// A child's setup failure report, `<exit code>\n<message>`; `None` when it
/// reported nothing.
fn parse_report(text: &str) -> Option<(i32, String)> {
    if text.is_empty() {
        return None;
    }
    Some(
        text.split_once('\n')
            .and_then(|(c, m)| Some((c.parse().ok()?, m.to_owned())))
            .unwrap_or((125, text.to_owned())),
    )
}

fn prepare_child(launch: &Launch<'_>, pid: Pid, layer_socket: &OwnedFd) -> Result<()> {
    launch.cgroup.add_process(pid.as_raw())?;
    if let Some(map) = launch.spec.userns {
        for file in ["uid_map", "gid_map"] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            fs::write(&path, format!("0 {} {}\n", map.host_start, map.size))
                .map_err(|source| Error::IdMap { path, source })?;
        }
        let userns = PathBuf::from(format!("/proc/{pid}/ns/user"));
        let userns_fd = fs::File::open(&userns).map_err(|source| Error::IdMap {
            path: userns.clone(),
            source,
        })?;
        let mounts = launch
            .layers
            .iter()
            .map(|l| {
                idmapped_mount(l, userns_fd.as_raw_fd()).map_err(|source| Error::IdMap {
                    path: l.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<OwnedFd>>>()?;
        let raw: Vec<RawFd> = mounts.iter().map(|m| m.as_raw_fd()).collect();
        for chunk in raw.chunks(64) {
            let iov = [io::IoSlice::new(&[0u8])];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(chunk)];
            nix::sys::socket::sendmsg::<()>(
                layer_socket.as_raw_fd(),
                &iov,
                &cmsg,
                nix::sys::socket::MsgFlags::empty(),
                None,
            )
            .map_err(sys("sendmsg"))?;
        }
    }
    Ok(())
}

/// A detached bind mount of `dir` whose ids are mapped through `userns`, so a
/// layer owned by host root appears owned by the container's root.
fn idmapped_mount(dir: &Path, userns: RawFd) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fd = sys::mount::open_tree_clone(&path)?;
    sys::mount::set_idmap(&fd, userns)?;
    Ok(fd)
}

fn wait_status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// A time limit for [`supervise`]: at `at`, `kill` runs (once).
struct Limit<'a> {
    at: Instant,
    kill: &'a dyn Fn(),
}

/// Forwards signals until the child exits; returns its exit status. With a
/// [`Limit`], its `kill` runs when the limit passes, and the wait goes on.
///
/// The child may have made the runner its tracer (`PTRACE_TRACEME`): its
/// ptrace stops are then reported here (`__WALL` waits for them whatever
/// the child's kind) and it is detached at once, with the signal it stopped
/// on, instead of waiting forever for a tracer that never continues it.
fn supervise(
    pid: Pid,
    spec: &ContainerSpec,
    signals: &SigSet,
    master: Option<RawFd>,
    mut limit: Option<Limit<'_>>,
) -> i32 {
    let mut deadline: Option<Instant> = None;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(_, sig)) => {
                let resume = (sig != Signal::SIGTRAP).then_some(sig);
                let _ = sys::proc::ptrace_detach(pid, resume);
                continue;
            }
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::PtraceSyscall(_)) => {
                let _ = sys::proc::ptrace_detach(pid, None);
                continue;
            }
            Ok(status) => {
                if let Some(code) = wait_status_code(status) {
                    return code;
                }
            }
            Err(nix::errno::Errno::ECHILD) => return 255,
            Err(_) => {}
        }
        let wake = deadline
            .into_iter()
            .chain(limit.as_ref().map(|l| l.at))
            .min();
        let signal = match wake {
            Some(at) => {
                let now = Instant::now();
                if at <= now {
                    if deadline.is_some_and(|d| d <= now) {
                        let _ = kill(pid, Signal::SIGKILL);
                        deadline = None;
                    }
                    if limit.as_ref().is_some_and(|l| l.at <= now) {
                        if let Some(l) = limit.take() {
                            (l.kill)();
                        }
                    }
                    continue;
                }
                sys::proc::sigtimedwait(signals, at - now)
            }
            None => signals.wait().ok(),
        };
        match signal {
            None | Some(Signal::SIGCHLD) => {}
            Some(Signal::SIGWINCH) => {
                if let Some(m) = master {
                    sys::term::copy_winsize(0, m);
                }
            }
            Some(Signal::SIGTERM) => {
                let _ = kill(pid, spec.stop_signal);
                deadline.get_or_insert(Instant::now() + spec.stop_timeout);
            }
            Some(other) => {
                let _ = kill(pid, other);
            }
        }
    }
}

/// `run --preserve-fds n`: checks that descriptors 3 to 3+n-1 are open now
/// (so they are the caller's, not the runner's own), and marks them
/// close-on-exec, so that no helper the runner execs gets them; the sandbox
/// hands them to PID 1 alone. Call it before the runner opens anything.
pub fn claim_preserved_fds(n: u32) -> io::Result<()> {
    let end = i32::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(3))
        .ok_or_else(|| io::Error::other(format!("--preserve-fds {n}: too many descriptors")))?;
    if let Some(fd) = (3..end).find(|fd| !sys::fd::is_open(*fd)) {
        return Err(io::Error::other(format!(
            "--preserve-fds {n}: descriptor {fd} is not open; open descriptors 3 to {} for the runner",
            end - 1
        )));
    }
    sys::fd::set_cloexec(3..end, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_one_thread_fails_while_another_lives() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || stopped.recv());
        let err = wait_single_threaded(Duration::from_millis(20)).unwrap_err();
        assert!(matches!(err, Error::MultiThreaded { threads, .. } if threads >= 2));
        drop(stop);
        let _ = other.join();
    }
}
