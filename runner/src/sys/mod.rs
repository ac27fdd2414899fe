//! Every raw (`unsafe`) system call of the runner, each behind a small safe
//! wrapper. The crate denies `unsafe_code`; this module alone may use it, so
//! `grep -rn unsafe runner/src` lands here (tests and the C init aside).
//!
//! Rules for a wrapper: it turns the C return convention into an
//! `io::Result` (or the nix equivalent) and nothing more, so policy stays in
//! the callers; every `unsafe` block carries a `SAFETY:` comment saying why
//! its pointers and descriptors are valid; anything a caller must guarantee
//! (being single-threaded before `clone`, owning a descriptor) is in the
//! wrapper's doc. Where nix already offers a safe call, callers use nix.
//!
//! By area:
//! - [`proc`]: `clone` of the sandbox child, dumpable flag, signal
//!   dispositions and `sigtimedwait`, detaching a tracee, the child's last
//!   report and `_exit`, random bytes;
//! - [`fd`]: closing every inherited descriptor, memfds (sealed or not),
//!   `execveat` of a descriptor;
//! - [`mount`]: the new mount API (`fsopen`, `fsconfig`, `fsmount`,
//!   `open_tree`, `mount_setattr`, `move_mount`);
//! - [`fs`]: extended attributes, inode flags (`chattr`);
//! - [`caps`]: bounding and ambient sets, `capset`;
//! - [`bpf`]: loading a seccomp filter, loading and attaching a cgroup
//!   device program;
//! - [`term`]: terminal ioctls; [`net`]: bringing up `lo`;
//! - [`mem`]: dropping the clean file pages a long-lived process touched
//!   once (the monitor, after setting its container up);
//! - [`watch`]: waiting for a change in a directory or the end of a
//!   process, without polling (nix's inotify and poll).
//!
//! A leaf: it uses nothing of the crate, and knows no policy.

pub(crate) mod bpf;
pub(crate) mod caps;
pub(crate) mod fd;
pub(crate) mod fs;
pub(crate) mod mem;
pub(crate) mod mount;
pub(crate) mod net;
pub(crate) mod proc;
pub(crate) mod term;
pub(crate) mod watch;

use std::io;

/// The C convention: a negative return means `errno` holds the error.
fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
