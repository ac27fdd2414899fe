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
//! parent moves the child into its cgroup): wait for the parent's go, new
//! cgroup namespace; private mounts; overlayfs of
//! the layers (the overlay lives only in the container's mount namespace, so
//! nothing is left mounted on the host if the runner dies); volumes and tmpfs;
//! the state dir's `etc/` files over `/etc/{hostname,hosts,resolv.conf}`;
//! `/proc`, read-only `/sys`, a minimal `/dev`; Docker's masked and read-only
//! paths; `pivot_root` and detach of the old root; hostname and `lo`; stdio
//! or pty; user and working directory; bounding set, user switch,
//! capabilities, `no_new_privs`, seccomp; then exec (or fork the reaper when
//! `--init`).

use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use crate::cgroup::{Cgroup, CgroupManager};
use crate::spec::{ContainerSpec, Network};
use crate::{caps, seccomp};

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

/// Restores the terminal mode on drop.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = io::stdin();
        match nix::sys::termios::tcgetattr(&stdin) {
            Ok(saved) => {
                let mut raw = saved.clone();
                nix::sys::termios::cfmakeraw(&mut raw);
                let _ =
                    nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
                RawTerminal(Some(saved))
            }
            Err(_) => RawTerminal(None),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }
}

fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: winsize is plain data; both ioctls take a pointer to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
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
    let pty = if spec.tty {
        Some(nix::pty::openpty(None, None).map_err(sys("openpty"))?)
    } else {
        None
    };
    let console = match &pty {
        Some(p) => Some(nix::unistd::ttyname(&p.slave).map_err(sys("ttyname"))?),
        None => None,
    };
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
        pty_slave: pty.as_ref().map(|p| p.slave.as_raw_fd()),
        pty_master: pty.as_ref().map(|p| p.master.as_raw_fd()),
        console: console.clone(),
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

    let mut output_thread = None;
    let _raw = match &pty {
        Some(p) => {
            let stdin_is_tty = nix::unistd::isatty(0).unwrap_or(false);
            if stdin_is_tty {
                copy_winsize(0, p.master.as_raw_fd());
            }
            let master_out: OwnedFd = p.master.try_clone().expect("dup pty master");
            output_thread = Some(std::thread::spawn(move || {
                let mut master = fs::File::from(master_out);
                let mut out = io::stdout();
                let mut buf = [0u8; 8192];
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 || out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let _ = out.flush();
                }
            }));
            if spec.stdin {
                let master_in: OwnedFd = p.master.try_clone().expect("dup pty master");
                std::thread::spawn(move || {
                    let mut master = fs::File::from(master_in);
                    let _ = io::copy(&mut io::stdin(), &mut master);
                });
            }
            stdin_is_tty.then(RawTerminal::enter)
        }
        None => None,
    };
    // Only the container may hold the slave now, so the master sees EOF when it exits.
    let master = pty.map(|p| {
        drop(p.slave);
        p.master
    });
    let code = supervise(pid, spec, &signals, master.as_ref().map(|m| m.as_raw_fd()));
    if let Some(t) = output_thread {
        let _ = t.join();
    }
    drop(master);
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
fn supervise(pid: Pid, spec: &ContainerSpec, signals: &SigSet, master: Option<RawFd>) -> i32 {
    let mut deadline: Option<Instant> = None;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
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
                    copy_winsize(0, m);
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
    pty_slave: Option<RawFd>,
    pty_master: Option<RawFd>,
    console: Option<PathBuf>,
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
fn join_cgroup(ctx: &ChildContext<'_>) -> Result<(), ChildError> {
    let mut go = [0u8; 1];
    // SAFETY: reading one byte into a local buffer.
    if unsafe { libc::read(ctx.sync_r, go.as_mut_ptr().cast(), 1) } != 1 {
        return Err(ChildError(
            125,
            "runner went away before the container started".into(),
        ));
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())
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
    // In a user namespace nothing works before the runner wrote the id maps,
    // so wait for its go first. Otherwise build the root filesystem while the
    // runner puts this process in its cgroup (on cgroup v1 that write waits
    // for an RCU grace period, ~10 ms here), and wait just before pivoting:
    // nothing of the image runs before then.
    let early = spec.userns.is_none();
    if !early {
        join_cgroup(ctx)?;
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
            console: ctx.console.clone(),
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
    mount_overlay(launch, &lowers, &rootfs)?;
    mount_volumes(spec, &rootfs)?;
    mount_system(spec, &rootfs, ctx.console.as_deref())?;
    mount_etc_files(launch.state_dir, &rootfs)?;
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
        join_cgroup(ctx)?;
    }
    pivot_into(&rootfs)?;
    setup_stdio(ctx)?;
    let user = crate::spec::resolve_user(&spec.user, Path::new("/"))
        .map_err(|e| ChildError(125, e.to_string()))?;
    let cwd = Path::new(&spec.cwd);
    if !cwd.is_dir() {
        fs::create_dir_all(cwd).ctx(|| format!("create working directory {}", spec.cwd))?;
        let _ = nix::unistd::chown(
            cwd,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        );
    }
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to {}", spec.cwd))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    let argv = resolve_argv(&spec.args, &env)?;

    if let (Some(bpf), false) = (launch.seccomp_bpf, spec.no_new_privileges) {
        seccomp::load(bpf).ctx(|| "seccomp".into())?;
    }
    caps::limit_bounding(&spec.capabilities).ctx(|| "capability bounding set".into())?;
    // SAFETY: plain prctl: keep permitted caps across the uid switch.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let gids: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    if spec.userns.is_none() || !gids.is_empty() {
        nix::unistd::setgroups(&gids).ctx(|| "setgroups".into())?;
    }
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
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if spec.init {
        // SAFETY: single-threaded child; the forked process only execs.
        match unsafe { nix::unistd::fork() }.ctx(|| "fork workload".into())? {
            nix::unistd::ForkResult::Child => exec(&argv, &env, ctx.err_w),
            nix::unistd::ForkResult::Parent { child } => {
                // The reaper never execs: close its copy of the error pipe so
                // the runner sees EOF once the workload has exec'd.
                let _ = nix::unistd::close(ctx.err_w);
                reap(child)
            }
        }
    }
    exec(&argv, &env, ctx.err_w)
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

fn exec(argv: &[CString], env: &[String], err_w: RawFd) -> ! {
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
    let mut args: Vec<&CString> = vec![&argv[argv.len() - 1]];
    args.extend(&argv[1..argv.len() - 1]);
    let e = nix::unistd::execve(path, &args, &env).unwrap_err();
    let code = if e == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    let report = format!("{code}\nexec {}: {e}", path.to_string_lossy());
    // SAFETY: write to the error pipe and leave without running destructors.
    unsafe {
        libc::write(err_w, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

/// PID 1 under `--init`: forwards signals to the workload, reaps every
/// orphan, and exits with the workload's status.
fn reap(child: Pid) -> ! {
    let signals = forwarded_and_chld();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&signals), None);
    loop {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(child) {
                        if let Some(code) = wait_status_code(status) {
                            // SAFETY: leave without destructors.
                            unsafe { libc::_exit(code) }
                        }
                    }
                }
            }
        }
        match signals.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(child, sig);
            }
        }
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

fn mount_overlay(launch: &Launch<'_>, layers: &[PathBuf], rootfs: &Path) -> Result<(), ChildError> {
    let upper = launch.state_dir.join("upper");
    let work = launch.state_dir.join("work");
    // Paths relative to the common layers dir keep the mount options short.
    let base = layers
        .first()
        .and_then(|l| l.parent())
        .and_then(|p| p.parent())
        .ok_or_else(|| ChildError(125, "image has no layers".into()))?;
    let lowers: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| {
            l.strip_prefix(base)
                .unwrap_or(l)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let userxattr = launch.spec.userns.is_some();
    let mut options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if userxattr {
        options.push_str(",userxattr");
    }
    nix::unistd::chdir(base).ctx(|| format!("chdir {}", base.display()))?;
    // mount(2) takes the options in one page; past that, the new mount API
    // adds the layers one by one (`lowerdir+`, Linux 6.8+).
    //
    // `volatile` (Linux 5.10+): the upper dir is thrown away when the
    // container ends, so the overlay need not sync it. Without it, the
    // unmount at the end of every container syncs the whole filesystem under
    // the upper dir, waiting for every dirty page on it (right after a pull,
    // the freshly unpacked layers: hundreds of milliseconds).
    let overlay = |options: &str| {
        mount(
            Some("overlay"),
            rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options),
        )
    };
    let mounted = if options.len() < 4000 {
        match overlay(&format!("{options},volatile")) {
            Err(nix::errno::Errno::EINVAL) => overlay(&options),
            other => other,
        }
        .map_err(io::Error::from)
    } else {
        mount_overlay_layer_by_layer(&lowers, &upper, &work, userxattr, rootfs)
    };
    mounted.ctx(|| format!("mount overlay ({} layers)", lowers.len()))?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// Mounts an overlay with fsopen/fsconfig/fsmount, one `lowerdir+` per layer
/// (top first, paths relative to the current directory).
fn mount_overlay_layer_by_layer(
    lowers: &[String],
    upper: &Path,
    work: &Path,
    userxattr: bool,
    rootfs: &Path,
) -> io::Result<()> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let c = |s: &[u8]| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let check = |rc: libc::c_long| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // SAFETY: fsopen with a valid filesystem name.
    let fs_fd =
        check(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fs_fd is a fresh descriptor we own.
    let fs_fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fs_fd as RawFd) };
    let set = |key: &std::ffi::CStr, value: Option<&CString>| {
        let (cmd, v) = match value {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: fsconfig on our fs context with NUL-terminated key and value.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs_fd.as_raw_fd(),
                cmd,
                key.as_ptr(),
                v,
                0,
            )
        })
        .map(drop)
    };
    for lower in lowers {
        set(c"lowerdir+", Some(&c(lower.as_bytes())?))?;
    }
    set(c"upperdir", Some(&c(upper.as_os_str().as_encoded_bytes())?))?;
    set(c"workdir", Some(&c(work.as_os_str().as_encoded_bytes())?))?;
    if userxattr {
        set(c"userxattr", None)?;
    }
    set(c"volatile", None)?;
    // SAFETY: creating the superblock of our configured context.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_fd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: fsmount of the created context.
    let mnt =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs_fd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    // SAFETY: mnt is a fresh descriptor we own.
    let mnt = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(mnt as RawFd) };
    let target = c(rootfs.as_os_str().as_encoded_bytes())?;
    // SAFETY: attaching our detached mount onto an existing directory.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// Joins `path` under `root`, resolving symlinks as if `root` were `/`, so a
/// symlink in the image can never point a mount outside the container.
pub fn secure_join(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&full)?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_owned()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                next.extend(pending);
                pending = next;
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn ensure_mount_point(target: &Path, dir: bool) -> Result<(), ChildError> {
    if dir {
        fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))
    } else {
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).ctx(|| format!("create {}", p.display()))?;
        }
        if !target.exists() {
            fs::File::create(target).ctx(|| format!("create {}", target.display()))?;
        }
        Ok(())
    }
}

fn mount_volumes(spec: &ContainerSpec, rootfs: &Path) -> Result<(), ChildError> {
    for v in &spec.volumes {
        let target = secure_join(rootfs, &v.container)
            .ctx(|| format!("resolve {}", v.container.display()))?;
        let is_dir = fs::metadata(&v.host)
            .ctx(|| format!("volume source {}", v.host.display()))?
            .is_dir();
        ensure_mount_point(&target, is_dir)?;
        mount(
            Some(&v.host),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("bind {} to {}", v.host.display(), v.container.display()))?;
        if v.read_only {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| format!("remount {} read-only", v.container.display()))?;
        }
    }
    for t in &spec.tmpfs {
        let target =
            secure_join(rootfs, &t.path).ctx(|| format!("resolve {}", t.path.display()))?;
        ensure_mount_point(&target, true)?;
        let options = if t.options.is_empty() {
            "mode=1777".to_owned()
        } else {
            t.options.clone()
        };
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(options.as_str()),
        )
        .ctx(|| format!("mount tmpfs on {}", t.path.display()))?;
    }
    Ok(())
}

/// Binds `<state>/etc/*` (hostname, hosts, resolv.conf) over the image's
/// `/etc`, when the image has an `/etc`.
fn mount_etc_files(state_dir: &Path, rootfs: &Path) -> Result<(), ChildError> {
    let etc = secure_join(rootfs, Path::new("/etc")).ctx(|| "resolve /etc".into())?;
    if !etc.is_dir() {
        return Ok(());
    }
    let Ok(entries) = fs::read_dir(state_dir.join("etc")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let target = secure_join(rootfs, &Path::new("/etc").join(&name))
            .ctx(|| format!("resolve /etc/{}", name.to_string_lossy()))?;
        ensure_mount_point(&target, false)?;
        mount(
            Some(&entry.path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind /etc/{}", name.to_string_lossy()))?;
    }
    Ok(())
}

const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn mount_system(
    spec: &ContainerSpec,
    rootfs: &Path,
    console: Option<&Path>,
) -> Result<(), ChildError> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = rootfs.join("proc");
    ensure_mount_point(&proc_dir, true)?;
    mount(Some("proc"), &proc_dir, Some("proc"), nodev, None::<&str>)
        .ctx(|| "mount /proc".into())?;
    let sys_dir = rootfs.join("sys");
    ensure_mount_point(&sys_dir, true)?;
    if mount(
        Some("sysfs"),
        &sys_dir,
        Some("sysfs"),
        nodev | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .is_err()
    {
        // Host network inside a user namespace: sysfs cannot be mounted fresh.
        mount(
            Some("/sys"),
            &sys_dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| "bind /sys".into())?;
        mount(
            None::<&str>,
            &sys_dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nodev,
            None::<&str>,
        )
        .ctx(|| "remount /sys read-only".into())?;
    }
    let dev = rootfs.join("dev");
    ensure_mount_point(&dev, true)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .ctx(|| "mount /dev".into())?;
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let made = nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        );
        if made.is_ok() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
                .ctx(|| format!("chmod /dev/{name}"))?;
        } else {
            ensure_mount_point(&path, false)?;
            mount(
                Some(&Path::new("/dev").join(name)),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("bind /dev/{name}"))?;
        }
    }
    let pts = dev.join("pts");
    ensure_mount_point(&pts, true)?;
    let pts_opts = if spec.userns.is_some() {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts_opts),
    )
    .ctx(|| "mount /dev/pts".into())?;
    let shm = dev.join("shm");
    ensure_mount_point(&shm, true)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nodev,
        Some("mode=1777,size=65536k"),
    )
    .ctx(|| "mount /dev/shm".into())?;
    let mqueue = dev.join("mqueue");
    ensure_mount_point(&mqueue, true)?;
    mount(Some("mqueue"), &mqueue, Some("mqueue"), nodev, None::<&str>)
        .ctx(|| "mount /dev/mqueue".into())?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .ctx(|| format!("symlink /dev/{link}"))?;
    }
    if let Some(console) = console {
        let target = dev.join("console");
        ensure_mount_point(&target, false)?;
        mount(
            Some(console),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| "bind /dev/console".into())?;
    }
    for path in MASKED {
        let target = rootfs.join(&path[1..]);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| format!("mask {path}"))?,
            Ok(_) => mount(
                Some(&dev.join("null")),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("mask {path}"))?,
            Err(_) => {}
        }
    }
    for path in READ_ONLY {
        let target = rootfs.join(&path[1..]);
        if target.exists() {
            mount(
                Some(&target),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind {path}"))?;
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nodev,
                None::<&str>,
            )
            .ctx(|| format!("remount {path} read-only"))?;
        }
    }
    Ok(())
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

fn pivot_into(rootfs: &Path) -> Result<(), ChildError> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

fn setup_stdio(ctx: &ChildContext<'_>) -> Result<(), ChildError> {
    if let Some(slave) = ctx.pty_slave {
        if let Some(master) = ctx.pty_master {
            let _ = nix::unistd::close(master);
        }
        nix::unistd::setsid().ctx(|| "setsid".into())?;
        // SAFETY: TIOCSCTTY on our pty slave with an integer argument.
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY as _, 0) } != 0 {
            return Err(ChildError(
                125,
                format!("set controlling terminal: {}", io::Error::last_os_error()),
            ));
        }
        for fd in 0..3 {
            nix::unistd::dup2(slave, fd).ctx(|| "dup2 pty".into())?;
        }
        if slave > 2 {
            let _ = nix::unistd::close(slave);
        }
    } else if !ctx.launch.spec.stdin {
        let null = fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?;
        nix::unistd::dup2(null.as_raw_fd(), 0).ctx(|| "dup2 stdin".into())?;
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

    #[test]
    fn secure_join_keeps_symlinks_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", root.join("data/up")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/etc-link/x")).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/data/up/y")).unwrap(),
            root.join("tmp/y")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../a")).unwrap(),
            root.join("a")
        );
    }
}
