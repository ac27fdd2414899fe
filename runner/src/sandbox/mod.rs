//! The sandbox: starts one container process fully isolated, supervises it,
//! and reports how it ended. It knows nothing about registries or images:
//! it gets layer directories, a state directory and a [`ContainerSpec`].
//!
//! Parent side: block the forwarded signals, `clone` the child into new
//! mount, PID, UTS, IPC, network (and user) namespaces, put it in its cgroup,
//! write its id maps, release it, then forward signals (the stop signal with
//! a SIGKILL deadline for SIGTERM) until it exits.
//!
//! Child side, in order (without a user namespace the cgroup step comes
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
//! bounding set, groups, user switch, capabilities (none inheritable),
//! `no_new_privs`, seccomp; then exec: the workload itself, or under
//! `--init` the small init program of [`init`], from a sealed memfd. Either
//! way PID 1 is a fresh image holding nothing of the runner's.
//!
//! Raw system calls the child needs beyond nix live in [`sys`].

mod init;
mod overlay;
mod rootfs;
mod stdio;
mod sys;

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::cgroup::{Cgroup, CgroupManager};
use crate::spec::{ContainerSpec, Network};
use crate::{caps, seccomp};
use init::Init;
use stdio::{ChildStreams, Streams};

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

/// Starts the container and supervises it until it exits. The process must
/// be single-threaded (see [`wait_single_threaded`]).
pub fn run(launch: &Launch<'_>) -> Result<Outcome> {
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
    if spec.network == Network::None {
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
        streams: streams.child(),
        console: streams.console(),
        runner_cgroups: &runner_cgroups,
    };
    let mut stack = vec![0u8; 1 << 20];
    // SAFETY: the runner is single-threaded here (downloads and unpacks have
    // joined), so the child may allocate; it never returns into our frames.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| child_main(&child_ctx)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(sys("clone"))?;
    drop(sync_r);
    drop(err_w);
    drop(fd_child);

    if let Err(e) = prepare_child(launch, pid, &fd_parent) {
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
        });
    }

    let relay = streams.relay(spec.stdin);
    let code = supervise(pid, spec, &signals, relay.master());
    relay.finish();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    Ok(Outcome {
        code,
        setup_error: None,
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
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let path = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: open_tree with a valid path; returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: mount_setattr on our detached mount with a valid attr struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn wait_status_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Forwards signals until the child exits; returns its exit status.
///
/// The child may have made the runner its tracer (`PTRACE_TRACEME`): its
/// ptrace stops are then reported here (`__WALL` waits for them whatever
/// the child's kind) and it is detached at once, with the signal it stopped
/// on, instead of waiting forever for a tracer that never continues it.
fn supervise(pid: Pid, spec: &ContainerSpec, signals: &SigSet, master: Option<RawFd>) -> i32 {
    let mut deadline: Option<Instant> = None;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Stopped(_, sig)) => {
                let resume = (sig != Signal::SIGTRAP).then_some(sig);
                let _ = sys::ptrace_detach(pid, resume);
                continue;
            }
            Ok(WaitStatus::PtraceEvent(..) | WaitStatus::PtraceSyscall(_)) => {
                let _ = sys::ptrace_detach(pid, None);
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
        let signal = match deadline {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = kill(pid, Signal::SIGKILL);
                    deadline = None;
                    continue;
                }
                timed_wait(signals, left)
            }
            None => signals.wait().ok(),
        };
        match signal {
            None | Some(Signal::SIGCHLD) => {}
            Some(Signal::SIGWINCH) => {
                if let Some(m) = master {
                    stdio::copy_winsize(0, m);
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

fn timed_wait(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let raw: &libc::sigset_t = set.as_ref();
    // SAFETY: valid sigset and timespec; siginfo may be null.
    let n = unsafe { libc::sigtimedwait(raw, std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

struct ChildContext<'a> {
    launch: &'a Launch<'a>,
    sync_r: RawFd,
    err_w: RawFd,
    layer_fds: RawFd,
    streams: ChildStreams,
    console: Option<&'a Path>,
    /// The runner's `/proc/self/cgroup`.
    runner_cgroups: &'a str,
}

/// A failure inside the child: exit code and message for the parent.
struct ChildError(i32, String);

trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ChildError>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ChildError> {
        self.map_err(|e| ChildError(125, format!("{}: {e}", what())))
    }
}

fn child_main(ctx: &ChildContext<'_>) -> isize {
    let ChildError(code, message) = match child_setup(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let report = format!("{code}\n{message}");
    // SAFETY: writing a buffer to our error pipe, then leaving without running
    // the parent's destructors or atexit handlers.
    unsafe {
        libc::write(ctx.err_w, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

enum Never {}

/// Wait for the runner's go (this process is in its cgroup then, and its id
/// maps are written), and take a cgroup namespace rooted at that cgroup.
/// Returns the hierarchies the container has a cgroup of its own in.
fn join_cgroup(ctx: &ChildContext<'_>) -> Result<Vec<String>, ChildError> {
    let mut go = [0u8; 1];
    // SAFETY: reading one byte into a local buffer.
    if unsafe { libc::read(ctx.sync_r, go.as_mut_ptr().cast(), 1) } != 1 {
        return Err(ChildError(
            125,
            "runner went away before the container started".into(),
        ));
    }
    let own = rootfs::own_cgroups(ctx.runner_cgroups);
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())?;
    Ok(own)
}

fn child_setup(ctx: &ChildContext<'_>) -> Result<Never, ChildError> {
    let launch = ctx.launch;
    let spec = launch.spec;
    // SAFETY: plain prctl: die with the runner.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // Until it execs, this process is a copy of the runner: nobody may read
    // its memory or descriptors through /proc (exec makes the workload
    // dumpable again; `--init`'s PID 1 clears it itself).
    sys::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    // In a user namespace nothing works before the runner wrote the id maps,
    // so wait for its go first. Otherwise build the root filesystem while the
    // runner puts this process in its cgroup (on cgroup v1 that write waits
    // for an RCU grace period, ~10 ms here), and wait just before pivoting:
    // nothing of the image runs before then.
    let early = spec.userns.is_none();
    let mut own_cgroups = Vec::new();
    if !early {
        own_cgroups = join_cgroup(ctx)?;
    }
    // With --userns this process becomes an unprivileged host uid below,
    // which cannot walk the private state root (see `paths`): open the state
    // dir first, still as the runner's uid (its owner) and in this mount
    // namespace, and reach it through the descriptor from then on.
    let (_state_fd, state_dir, userns_launch, userns_ctx);
    let ctx = if spec.userns.is_some() {
        let dir = fs::File::open(launch.state_dir)
            .ctx(|| format!("open {}", launch.state_dir.display()))?;
        state_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        _state_fd = dir;
        userns_launch = Launch {
            state_dir: &state_dir,
            ..*launch
        };
        userns_ctx = ChildContext {
            launch: &userns_launch,
            ..*ctx
        };
        &userns_ctx
    } else {
        ctx
    };
    let launch = ctx.launch;
    if spec.userns.is_some() {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setresgid in user namespace".into())?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setresuid in user namespace".into())?;
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "make mounts private".into())?;
    let rootfs = launch.state_dir.join("rootfs");
    let lowers = if spec.userns.is_some() {
        attach_idmapped_layers(ctx)?
    } else {
        launch.layers.to_vec()
    };
    overlay::mount_overlay(launch, &lowers, &rootfs)?;
    rootfs::mount_volumes(spec, &rootfs)?;
    rootfs::mount_system(spec, &rootfs, ctx.console)?;
    rootfs::mount_etc_files(launch.state_dir, &rootfs)?;
    if spec.read_only {
        mount(
            None::<&str>,
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .ctx(|| "remount root read-only".into())?;
    }
    nix::unistd::sethostname(&spec.hostname).ctx(|| "sethostname".into())?;
    if spec.network == Network::None {
        loopback_up().ctx(|| "bring up lo".into())?;
    }
    if early {
        own_cgroups = join_cgroup(ctx)?;
    }
    rootfs::mount_cgroups(&rootfs, &own_cgroups)?;
    rootfs::pivot_into(&rootfs)?;
    ctx.streams.install()?;
    let user = crate::spec::resolve_user(&spec.user, Path::new("/"))
        .map_err(|e| ChildError(125, e.to_string()))?;
    enter_working_dir(&spec.cwd, &user)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    let argv = resolve_argv(&spec.args, &env)?;
    // Nothing of the runner's may enter the container: close (not merely
    // mark) every descriptor but the error pipe, which is close-on-exec.
    sys::close_fds_except(ctx.err_w).ctx(|| "close inherited descriptors".into())?;
    let init = if spec.init {
        Some(Init::load().ctx(|| "load the init program".into())?)
    } else {
        None
    };

    if let (Some(bpf), false) = (launch.seccomp_bpf, spec.no_new_privileges) {
        seccomp::load(bpf).ctx(|| "seccomp".into())?;
    }
    caps::limit_bounding(&spec.capabilities).ctx(|| "capability bounding set".into())?;
    // SAFETY: plain prctl: keep permitted caps across the uid switch.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    // Always: without it a --userns container would keep the runner's
    // supplementary groups (host gid 0 among them).
    let gids: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).ctx(|| "setgroups".into())?;
    nix::unistd::setresgid(
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
    )
    .ctx(|| format!("setgid {}", user.gid))?;
    nix::unistd::setresuid(
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
    )
    .ctx(|| format!("setuid {}", user.uid))?;
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    let effective: &[caps::Capability] = if user.uid == 0 {
        &spec.capabilities
    } else {
        &[]
    };
    caps::set_process_caps(effective).ctx(|| "capset".into())?;
    if spec.no_new_privileges {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(ChildError(
                125,
                format!("no_new_privs: {}", io::Error::last_os_error()),
            ));
        }
        if let Some(bpf) = launch.seccomp_bpf {
            seccomp::load(bpf).ctx(|| "seccomp".into())?;
        }
    }
    exec(&argv, &env, init.as_ref(), ctx.err_w)
}

/// Enters the working directory, creating it (owned by the user) when
/// missing. Runs after `pivot_root`, so every symlink resolves inside the
/// container; one that dangles is followed to where it points, which is
/// created, as Docker does.
fn enter_working_dir(cwd: &str, user: &crate::spec::ResolvedUser) -> Result<(), ChildError> {
    let resolved = crate::fsutil::secure_join(Path::new("/"), Path::new(cwd))
        .ctx(|| format!("resolve working directory {cwd}"))?;
    if !resolved.is_dir() {
        fs::create_dir_all(&resolved).ctx(|| format!("create working directory {cwd}"))?;
        let _ = nix::unistd::chown(
            &resolved,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        );
    }
    nix::unistd::chdir(&resolved).ctx(|| format!("chdir to {cwd}"))
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, ChildError> {
    CString::new(s.as_ref()).map_err(|_| ChildError(125, "NUL byte in argument".into()))
}

/// Looks argv[0] up in the container's PATH.
fn resolve_argv(args: &[String], env: &[String]) -> Result<Vec<CString>, ChildError> {
    let first = &args[0];
    let path = if first.contains('/') {
        first.clone()
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::spec::DEFAULT_PATH);
        search
            .split(':')
            .map(|d| format!("{d}/{first}"))
            .find(|p| {
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| {
                ChildError(
                    127,
                    format!("exec: {first:?}: executable file not found in $PATH"),
                )
            })?
    };
    let mut out = vec![cstring(&path)?];
    for a in &args[1..] {
        out.push(cstring(a)?);
    }
    out.push(cstring(first)?);
    Ok(out)
}

/// Execs the workload, or under `--init` the init program with the
/// workload's path and argv. Only a failure returns: it is reported on the
/// error pipe (closed by a successful exec), and the child exits.
fn exec(argv: &[CString], env: &[String], init: Option<&Init>, err_w: RawFd) -> ! {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::all()), None);
    // Ignored signals stay ignored across exec: the runner ignores SIGPIPE
    // (Rust does) and may have inherited more from its own parent.
    for sig in 1..32 {
        // SAFETY: restoring default dispositions before exec.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let env: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    // argv holds [resolved path, args[1..]..., original argv0]
    let path = &argv[0];
    let mut args: Vec<&CStr> = vec![&argv[argv.len() - 1]];
    args.extend(argv[1..argv.len() - 1].iter().map(CString::as_c_str));
    let (what, e) = match init {
        Some(init) => ("exec strata-init for", init.exec(path, &args, &env)),
        None => (
            "exec",
            io::Error::from(nix::unistd::execve(path, &args, &env).unwrap_err()),
        ),
    };
    let code = if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    let report = format!("{code}\n{what} {}: {e}", path.to_string_lossy());
    // SAFETY: write to the error pipe and leave without running destructors.
    unsafe {
        libc::write(err_w, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

/// Receives the id-mapped layer mounts from the parent and attaches them
/// under `<state>/lower/<n>`; returns those paths, base first.
fn attach_idmapped_layers(ctx: &ChildContext<'_>) -> Result<Vec<PathBuf>, ChildError> {
    let launch = ctx.launch;
    let mut fds: Vec<RawFd> = Vec::new();
    while fds.len() < launch.layers.len() {
        let mut byte = [0u8; 1];
        let mut iov = [io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 64]);
        let msg = nix::sys::socket::recvmsg::<()>(
            ctx.layer_fds,
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .ctx(|| "receive id-mapped layers".into())?;
        let before = fds.len();
        for c in msg.cmsgs().ctx(|| "receive id-mapped layers".into())? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        if fds.len() == before {
            return Err(ChildError(125, "runner sent no id-mapped layers".into()));
        }
    }
    let mut paths = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        let target = launch.state_dir.join("lower").join(i.to_string());
        let c_target = cstring(target.as_os_str().as_encoded_bytes())?;
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        // SAFETY: move_mount of a received detached mount onto an existing dir.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                *fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                c_target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(ChildError(
                125,
                format!("attach id-mapped layer {i}: {}", io::Error::last_os_error()),
            ));
        }
        let _ = nix::unistd::close(*fd);
        paths.push(target);
    }
    Ok(paths)
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket; the ifreq is zeroed plain data with a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
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
