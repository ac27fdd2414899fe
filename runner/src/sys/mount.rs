//! The new mount API: `fsopen`, `fsconfig`, `fsmount` (overlayfs), and
//! `open_tree`, `mount_setattr`, `move_mount` (id-mapped and detached
//! mounts). The old `mount(2)` is safe in nix and used from there.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// `open_tree(path, OPEN_TREE_CLONE)`: a detached copy of the mount at
/// `path`, as a close-on-exec descriptor.
pub(crate) fn open_tree_clone(path: &CStr) -> io::Result<OwnedFd> {
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
pub(crate) fn set_idmap(mount: &OwnedFd, userns: RawFd) -> io::Result<()> {
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
pub(crate) fn move_mount(mount: RawFd, target: &CStr) -> io::Result<()> {
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
pub(crate) fn fsopen(fstype: &CStr) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    // SAFETY: fsopen with a valid filesystem name.
    let fd = check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets `key` in the filesystem context `fs`: to `value`, or as a flag.
pub(crate) fn fsconfig_set(fs: &OwnedFd, key: &CStr, value: Option<&CStr>) -> io::Result<()> {
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
pub(crate) fn fsmount(fs: &OwnedFd) -> io::Result<OwnedFd> {
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

/// Detaches the mount at `path` (`MNT_DETACH`) and leaves the freeing of
/// what it holds to a short-lived process of its own, together with
/// whatever `keep` holds (a finished step's mount namespace): tearing down
/// a tmpfs or an overlay of thousands of inodes takes tens of
/// milliseconds, which the caller need not wait for. The mount is gone
/// from the mount table when this returns; the process (a grandchild, so
/// nobody has to reap it) holds a descriptor of the mount until then, so
/// the last reference, and the teardown, are its. Without a process (fork
/// failed) the teardown happens here.
pub(crate) fn detach_in_background(path: &CStr, keep: Option<OwnedFd>) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor returned is ours.
    let held = unsafe {
        let fd = libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        check(fd.into())?;
        OwnedFd::from_raw_fd(fd)
    };
    let keep_fd = keep.as_ref().map_or(held.as_raw_fd(), AsRawFd::as_raw_fd);
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: the kernel writes two descriptors into `ends`.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) }.into())?;
    // SAFETY: both are fresh descriptors of ours.
    let (wait_end, go_end) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: between fork and _exit the children make only async-signal-safe
    // system calls (fork, dup2, close_range, read, _exit) on descriptors that
    // exist, so another thread of ours holding a lock cannot hurt them.
    unsafe {
        match libc::fork() {
            0 => {
                if libc::fork() == 0 {
                    // The grandchild: keep the mount, the namespace and the
                    // pipe's read end as 0, 1 and 2, close the rest (stdout
                    // and stderr too: a caller reading them must not wait
                    // for us), and wait for the detach.
                    let ok = libc::dup2(held.as_raw_fd(), 0) == 0
                        && libc::dup2(keep_fd, 1) == 1
                        && libc::dup2(wait_end.as_raw_fd(), 2) == 2;
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    let mut byte = 0u8;
                    while ok
                        && libc::read(2, (&mut byte as *mut u8).cast(), 1) < 0
                        && *libc::__errno_location() == libc::EINTR
                    {}
                }
                libc::_exit(0);
            }
            -1 => {}
            child => {
                let mut status = 0;
                while libc::waitpid(child, &mut status, 0) < 0
                    && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
        }
    }
    drop(wait_end);
    // SAFETY: a NUL-terminated path.
    let detached = check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }.into());
    drop(keep);
    drop(held);
    // The grandchild's read ends: it exits, and the teardown is its.
    drop(go_end);
    detached.map(drop)
}
