//! Every raw (`unsafe`) system call the sandbox makes, each behind a small
//! safe wrapper: the `clone` of the child; the new mount API (`fsopen`,
//! `fsconfig`, `fsmount`, `open_tree`, `mount_setattr`, `move_mount`);
//! closing every inherited descriptor; sealed memfds and `execveat`; the
//! dumpable flag; signal dispositions and `sigtimedwait`; detaching a
//! tracee; terminal ioctls; bringing up `lo`; the child's last report and
//! `_exit`. Each wrapper turns the C return convention into an `io::Result`
//! (or the nix equivalent) and nothing more; policy lives in the callers.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Closes every descriptor from 3 up, except `keep` (for real: not merely
/// marked close-on-exec, so that nothing survives in a process that never
/// execs, and nothing is left to a process that inherits the table).
pub fn close_fds_except(keep: RawFd) -> io::Result<()> {
    let close_range = |first: u32, last: u32| {
        if first > last {
            return Ok(());
        }
        // SAFETY: close_range on a range of our own descriptor table.
        check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
    };
    let keep = u32::try_from(keep).unwrap_or(0);
    if keep < 3 {
        return close_range(3, u32::MAX);
    }
    close_range(3, keep - 1)?;
    close_range(keep + 1, u32::MAX)
}

/// Marks the process (not) dumpable: a non-dumpable process's `/proc/PID`
/// files belong to root and it can be ptraced only with `CAP_SYS_PTRACE`.
pub fn set_dumpable(dumpable: bool) -> io::Result<()> {
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

/// A close-on-exec memfd holding `bytes`, sealed so that nobody, including
/// whoever reaches it later through `/proc/PID/exe`, can change, grow or
/// shrink it, or lift the seals.
pub fn sealed_memfd(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a NUL-terminated name. MFD_EXEC (Linux 6.3+)
    // keeps the file executable where vm.memfd_noexec=1 would seal it
    // non-executable; older kernels refuse the flag, so retry without it.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    check(fd.into())?;
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut written = 0;
    while written < bytes.len() {
        let rest = &bytes[written..];
        // SAFETY: writing from a live buffer to our memfd.
        let n =
            check(unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) as _ })?;
        written += n as usize;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our memfd with an integer argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }.into())?;
    Ok(fd)
}

/// Executes the file open at `fd` (`execveat(fd, "", argv, envp,
/// AT_EMPTY_PATH)`); returns only on failure.
pub fn exec_fd(fd: RawFd, argv: &[&CStr], env: &[CString]) -> io::Error {
    let mut args: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    args.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of pointers to NUL-terminated strings
    // that outlive the call; on success the call does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            args.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Detaches the tracee `pid` (stopped), delivering `signal` as it resumes.
pub fn ptrace_detach(
    pid: nix::unistd::Pid,
    signal: Option<nix::sys::signal::Signal>,
) -> io::Result<()> {
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

/// Starts `child` in a new process (`clone` with `flags`, SIGCHLD on exit)
/// running on `stack`. The caller must be single-threaded (see
/// [`super::wait_single_threaded`]): the child is a copy of this process
/// that may allocate, and a lock held by another thread would never be
/// released in it.
pub fn clone_child(
    child: Box<dyn FnMut() -> isize + '_>,
    stack: &mut [u8],
    flags: CloneFlags,
) -> nix::Result<Pid> {
    // SAFETY: the runner is single-threaded here (downloads and unpacks have
    // joined), so the child may allocate; it never returns into our frames.
    unsafe { nix::sched::clone(child, stack, flags, Some(libc::SIGCHLD)) }
}

/// Waits up to `timeout` for one of the (blocked) signals in `set`.
pub fn sigtimedwait(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    let raw: &libc::sigset_t = set.as_ref();
    // SAFETY: valid sigset and timespec; siginfo may be null.
    let n = unsafe { libc::sigtimedwait(raw, std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

/// Restores the default disposition of every standard signal (1 to 31):
/// ignored signals would stay ignored across exec.
pub fn reset_signal_dispositions() {
    for sig in 1..32 {
        // SAFETY: restoring default dispositions before exec.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// Writes `report` to `fd` and leaves at once with `code`, without running
/// destructors or atexit handlers (this process is a copy of the runner).
pub fn report_and_exit(fd: RawFd, report: &[u8], code: i32) -> ! {
    // SAFETY: writing a live buffer to our error pipe, then leaving.
    unsafe {
        libc::write(fd, report.as_ptr().cast(), report.len());
        libc::_exit(code)
    }
}

/// `open_tree(path, OPEN_TREE_CLONE)`: a detached copy of the mount at
/// `path`, as a close-on-exec descriptor.
pub fn open_tree_clone(path: &CStr) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    // SAFETY: open_tree with a valid path; returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Maps the ids of the detached mount `mount` through the user namespace
/// open at `userns` (`mount_setattr` with `MOUNT_ATTR_IDMAP`).
pub fn set_idmap(mount: &OwnedFd, userns: RawFd) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: mount_setattr on our detached mount with a valid attr struct.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Attaches the detached mount open at `mount` onto the existing `target`.
pub fn move_mount(mount: RawFd, target: &CStr) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: move_mount of a detached mount onto a NUL-terminated path.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// A new filesystem context for `fstype` (`fsopen`, close-on-exec).
pub fn fsopen(fstype: &CStr) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    // SAFETY: fsopen with a valid filesystem name.
    let fd = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets `key` in the filesystem context `fs`: to `value`, or as a flag.
pub fn fsconfig_set(fs: &OwnedFd, key: &CStr, value: Option<&CStr>) -> io::Result<()> {
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    let (cmd, v) = match value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: fsconfig on our fs context with NUL-terminated key and value.
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key.as_ptr(), v, 0) })
        .map(drop)
}

/// Creates the superblock of the configured context `fs`, and mounts it
/// detached (`fsconfig(FSCONFIG_CMD_CREATE)`, then `fsmount`).
pub fn fsmount(fs: &OwnedFd) -> io::Result<OwnedFd> {
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: creating the superblock of our configured context.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    // SAFETY: fsmount of the created context.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Makes the terminal open at `fd` the controlling terminal of this
/// process's (new) session.
pub fn set_controlling_terminal(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY on our pty slave with an integer argument.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY as _, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies the window size of terminal `from` to terminal `to`.
pub fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: winsize is plain data; both ioctls take a pointer to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Brings up the loopback interface `lo` of this network namespace.
pub fn loopback_up() -> io::Result<()> {
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
