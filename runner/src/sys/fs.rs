//! File calls nix does not wrap: extended attributes, the inode flags of
//! `chattr` (`FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS`), and starting write-back
//! of a file's range (`sync_file_range`).

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

use super::check;

/// Sets the extended attribute `name` of `path` (not following a final
/// symlink) to `value` (`lsetxattr`, no flags).
pub(crate) fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid NUL-terminated strings and a valid buffer for the call's duration.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc.into()).map(drop)
}

/// The names of `path`'s extended attributes (not following a final
/// symlink; `llistxattr`), each without its NUL.
pub(crate) fn llistxattr(path: &CStr) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: valid NUL-terminated path and a buffer of the length given.
    names(|buf| unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// The names of the open file `fd`'s extended attributes (`flistxattr`).
pub(crate) fn flistxattr(fd: &impl AsRawFd) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: an open descriptor and a buffer of the length given.
    names(|buf| unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// The value of `path`'s extended attribute `name` (not following a final
/// symlink; `lgetxattr`).
pub(crate) fn lgetxattr(path: &CStr, name: &CStr) -> io::Result<Vec<u8>> {
    value(|buf| {
        // SAFETY: valid NUL-terminated strings and a buffer of the length given.
        unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// The value of the open file `fd`'s extended attribute `name` (`fgetxattr`).
pub(crate) fn fgetxattr(fd: &impl AsRawFd, name: &CStr) -> io::Result<Vec<u8>> {
    value(|buf| {
        // SAFETY: an open descriptor, a NUL-terminated name and a buffer of the length given.
        unsafe {
            libc::fgetxattr(
                fd.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    })
}

/// A list of NUL-terminated names from `call` (a `*listxattr`), growing the
/// buffer while it is too small.
fn names(call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<Vec<u8>>> {
    let buf = grow(vec![0u8; 1024], call)?;
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// A value from `call` (a `*getxattr`), growing the buffer while it is too small.
fn value(call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    grow(vec![0u8; 256], call)
}

fn grow(mut buf: Vec<u8>, mut call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        match check(call(&mut buf) as libc::c_long) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e),
        }
    }
}

/// `FS_TOPDIR_FL` (`chattr +T`): ext4's hint that the directory's children
/// are the tops of unrelated trees, so each goes to its own block group.
pub(crate) const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Adds `flags` to the inode flags of the open file `fd` (`chattr +...`).
pub(crate) fn add_inode_flags(fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<()> {
    let mut now: libc::c_int = 0;
    // SAFETY: the kernel reads and writes one int through the pointer, which
    // outlives the call; `fd` is an open descriptor.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut now) }.into())?;
    if now & flags == flags {
        return Ok(());
    }
    let new = now | flags;
    // SAFETY: as above; the kernel only reads the int.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &new) }.into()).map(drop)
}

/// Starts writing bytes `offset..offset + len` of `fd` to disk without
/// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later
/// fsync only waits for what came after.
pub(crate) fn start_write_back(fd: &impl AsRawFd, offset: u64, len: u64) -> io::Result<()> {
    let (offset, len) = (offset as libc::off64_t, len as libc::off64_t);
    // SAFETY: plain integers; `fd` is an open descriptor.
    let rc =
        unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    check(rc.into()).map(drop)
}
