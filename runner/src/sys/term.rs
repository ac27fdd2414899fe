//! Terminal ioctls: the controlling terminal and the window size.

use std::io;
use std::os::fd::RawFd;

/// Makes the terminal open at `fd` the controlling terminal of this
/// process's (new) session.
pub(crate) fn set_controlling_terminal(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY on our pty slave with an integer argument.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY as _, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies the window size of terminal `from` to terminal `to`.
pub(crate) fn copy_winsize(from: RawFd, to: RawFd) {
    // SAFETY: winsize is plain data; both ioctls take a pointer to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}
