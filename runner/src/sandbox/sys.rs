//! Raw system calls the sandbox makes that neither std nor nix (with the
//! features this crate enables) wrap: closing every inherited descriptor,
//! sealed memfds and `execveat`, the dumpable flag, and detaching a tracee. Each wrapper turns the C return convention into an
//! `io::Result` and nothing more; policy lives in the callers.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
