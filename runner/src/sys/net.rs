//! Network interface ioctls: bringing up `lo` in a new network namespace.
//! (Bridges, veths and addresses are `crate::network`'s, over the
//! rtnetlink crate's safe API, and `setns` is nix's: nothing raw there.)

use std::io;

/// Brings up the loopback interface `lo` of this network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
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
