//! Processes and signals: the sandbox child's `clone`, its last report and
//! `_exit`, the dumpable flag, signal dispositions, `sigtimedwait`,
//! detaching a tracee; random bytes from the kernel; and the Landlock ABI
//! the kernel offers.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::check;

/// Starts `child` in a new process (`clone` with `flags`, SIGCHLD on exit)
/// running on `stack`. The caller must be single-threaded (see
/// `sandbox::wait_single_threaded`): the child is a copy of this process
/// that may allocate, and a lock held by another thread would never be
/// released in it.
pub(crate) fn clone_child(
    child: Box<dyn FnMut() -> isize + '_>,
    stack: &mut [u8],
    flags: CloneFlags,
) -> nix::Result<Pid> {
    // SAFETY: the runner is single-threaded here (downloads and unpacks have
    // joined), so the child may allocate; it never returns into our frames.
    unsafe { nix::sched::clone(child, stack, flags, Some(libc::SIGCHLD)) }
}

/// `fork`: a copy of this process that goes on running the same code (the
/// detached container's monitor, forked by the command that starts it).
/// The caller must be single-threaded (see
/// `sandbox::wait_single_threaded`): the child allocates, and a lock held by
/// another thread would never be released in it.
pub(crate) fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: the caller is single-threaded (see above), so the child's
    // heap and every lock are in a consistent state.
    unsafe { nix::unistd::fork() }
}

/// Writes `report` to `fd` and leaves at once with `code`, without running
/// destructors or atexit handlers (this process is a copy of the runner).
pub(crate) fn report_and_exit(fd: RawFd, report: &[u8], code: i32) -> ! {
    // SAFETY: writing a live buffer to our error pipe, then leaving.
    unsafe {
        libc::write(fd, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

/// Leaves at once with `code`, without running destructors or atexit
/// handlers (this process is a copy of the runner).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Marks the process (not) dumpable: a non-dumpable process's `/proc/PID`
/// files belong to root and it can be ptraced only with `CAP_SYS_PTRACE`.
pub(crate) fn set_dumpable(dumpable: bool) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    };
    check(rc.into()).map(drop)
}

/// Restores the default disposition of every standard signal (1 to 31):
/// ignored signals would stay ignored across exec.
pub(crate) fn reset_signal_dispositions() {
    for sig in 1..32 {
        // SAFETY: restoring default dispositions before exec.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Waits up to `timeout` for one of the (blocked) signals in `set`.
pub(crate) fn sigtimedwait(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let raw: &libc::sigset_t = set.as_ref();
    // SAFETY: valid sigset and timespec; siginfo may be null.
    let n = unsafe { libc::sigtimedwait(raw, std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

/// Detaches the tracee `pid` (stopped), delivering `signal` as it resumes.
pub(crate) fn ptrace_detach(pid: Pid, signal: Option<Signal>) -> io::Result<()> {
    let signal = signal.map_or(0, |s| s as libc::c_long);
    // SAFETY: PTRACE_DETACH takes no pointer; `data` is the signal number.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            signal as *mut libc::c_void,
        )
    };
    check(rc).map(drop)
}

/// Fills `buf` from the kernel's random source (`getrandom`, blocking until
/// it is seeded); returns how many bytes were written, or -1.
pub(crate) fn getrandom(buf: &mut [u8]) -> isize {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) }
}

/// While held, Ctrl-C (SIGINT) prints "runner: interrupted" and ends the
/// process with status 130 at once; dropping it puts back the disposition
/// found (a runner started with SIGINT ignored keeps ignoring it). For
/// `run`'s pull and unpack, which cannot block SIGINT in a waiting thread:
/// the sandbox needs a single-threaded process, and the container must not
/// inherit the block. What an interrupted unpack leaves is removed by the
/// next command (its lock dies with the process).
pub(crate) struct ExitOnInterrupt {
    previous: Option<nix::sys::signal::SigAction>,
}

extern "C" fn say_interrupted_and_exit(_signal: libc::c_int) {
    const MESSAGE: &[u8] = b"runner: interrupted\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
        libc::_exit(130);
    }
}

impl ExitOnInterrupt {
    pub(crate) fn install() -> io::Result<ExitOnInterrupt> {
        use nix::sys::signal::SigHandler;
        let previous = set_sigint(SigHandler::Handler(say_interrupted_and_exit))?;
        if previous.handler() == SigHandler::SigIgn {
            set_sigint_action(&previous)?;
            return Ok(ExitOnInterrupt { previous: None });
        }
        Ok(ExitOnInterrupt {
            previous: Some(previous),
        })
    }
}

impl Drop for ExitOnInterrupt {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = set_sigint_action(&previous);
        }
    }
}

fn set_sigint(handler: nix::sys::signal::SigHandler) -> io::Result<nix::sys::signal::SigAction> {
    use nix::sys::signal::{SaFlags, SigAction};
    set_sigint_action(&SigAction::new(
        handler,
        SaFlags::SA_RESTART,
        SigSet::empty(),
    ))
}

/// Sets SIGINT's action, returning the one it replaces.
fn set_sigint_action(
    action: &nix::sys::signal::SigAction,
) -> io::Result<nix::sys::signal::SigAction> {
    // SAFETY: the handlers set here only call async-signal-safe functions
    // (or are the previous disposition, put back as found).
    unsafe { nix::sys::signal::sigaction(Signal::SIGINT, action) }.map_err(io::Error::from)
}

/// A pidfd for `pid` (`pidfd_open`): readable once the process has exited,
/// and never names a recycled pid.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor.
    let fd = super::check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a fresh descriptor that we own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until `fd` is readable (a pidfd: its process exited) or `timeout`
/// passes (`None`: no limit). True if it became readable.
pub(crate) fn wait_readable(
    fd: &std::os::fd::OwnedFd,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, for the length given.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// The Landlock ABI version the kernel offers (`landlock_create_ruleset`
/// with the VERSION flag), 0 when it has none or it is disabled.
pub(crate) fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer and no size.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}
