//! The descriptor table: closing every inherited descriptor, memfds (plain
//! or sealed), and executing the file open at a descriptor.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// Closes every descriptor from `first` (3 or more) up, except `keep` (for
/// real: not merely marked close-on-exec, so that nothing survives in a
/// process that never execs, and nothing is left to a process that inherits
/// the table).
pub(crate) fn close_fds_except(first: RawFd, keep: RawFd) -> io::Result<()> {
    let close_range = |first: u32, last: u32| {
        if first > last {
            return Ok(());
        }
        // SAFETY: close_range on a range of our own descriptor table.
        check(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) }).map(drop)
    };
    let first = u32::try_from(first.max(3)).unwrap_or(3);
    let keep = u32::try_from(keep).unwrap_or(0);
    if keep < first {
        return close_range(first, u32::MAX);
    }
    close_range(first, keep - 1)?;
    close_range(keep + 1, u32::MAX)
}

/// Spawns `cmd` so that, besides its stdio, it inherits `keep` and no
/// other descriptor: in the child, between `fork` and `exec`, every
/// descriptor from 3 up is marked close-on-exec, then `keep` loses the
/// flag (what the spawning machinery uses until `exec` stays open). Only
/// async-signal-safe calls there (`close_range` with `CLOSE_RANGE_CLOEXEC`,
/// Linux 5.11, and `fcntl`).
pub(crate) fn spawn_keeping(
    cmd: &mut std::process::Command,
    keep: Vec<RawFd>,
) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let hook = move || {
        // SAFETY: close_range over our own descriptor table, only setting FD_CLOEXEC.
        check(unsafe {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC)
        })?;
        for fd in &keep {
            // SAFETY: F_SETFD with no flags on a descriptor we hold.
            check(unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) }.into())?;
        }
        Ok(())
    };
    // SAFETY: the hook makes async-signal-safe calls only, and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    cmd.spawn()
}

/// Sends descriptor `fd` over the Unix socket `socket` (one byte, `SCM_RIGHTS`).
pub(crate) fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [io::IoSlice::new(&[0u8])];
    let fds = [fd];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one descriptor [`send_fd`] sent on `socket`, close-on-exec;
/// `None` when the peer closed its end without sending one.
pub(crate) fn recv_fd(socket: RawFd) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut got = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: a descriptor the kernel just installed for us.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                got.get_or_insert(owned);
            }
        }
    }
    Ok(got)
}

/// Whether descriptor `fd` is open.
pub(crate) fn is_open(fd: RawFd) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// Marks the descriptors in `fds` close-on-exec (`cloexec`) or not.
pub(crate) fn set_cloexec(fds: std::ops::Range<RawFd>, cloexec: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flag = if cloexec {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    for fd in fds {
        fcntl(fd, FcntlArg::F_SETFD(flag))?;
    }
    Ok(())
}

/// An empty close-on-exec memfd named `name`, as a file.
pub(crate) fn memfd(name: &CStr) -> io::Result<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    check(fd.into())?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A close-on-exec memfd holding `bytes`, sealed so that nobody, including
/// whoever reaches it later through `/proc/PID/exe`, can change, grow or
/// shrink it, or lift the seals.
pub(crate) fn sealed_memfd(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
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
pub(crate) fn exec_fd(fd: RawFd, argv: &[&CStr], env: &[CString]) -> io::Error {
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
