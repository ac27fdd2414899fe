//! Capability sets of the calling thread: the bounding set, the ambient set
//! and `capset` (version 3: two 32-bit words per set).

use std::io;

use super::check;

/// Drops capability number `cap` from the bounding set (needs CAP_SETPCAP).
pub(crate) fn drop_bounding(cap: u8) -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    check(rc.into()).map(drop)
}

/// Empties the ambient set.
pub(crate) fn clear_ambient() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(rc.into()).map(drop)
}

/// Sets the effective, permitted and inheritable sets of this thread to the
/// given masks (bit `n % 32` of word `n / 32` is capability `n`).
pub(crate) fn capset(
    effective: [u32; 2],
    permitted: [u32; 2],
    inheritable: [u32; 2],
) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [0, 1].map(|i| Data {
        effective: effective[i],
        permitted: permitted[i],
        inheritable: inheritable[i],
    });
    // SAFETY: header and two data structs laid out as the kernel's v3 ABI expects.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) }).map(drop)
}
