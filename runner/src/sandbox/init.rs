//! `--init`: the container's PID 1 is `strata-init` (runner/init/init.c), a
//! small static program built by build.rs and embedded here, not a fork of
//! the runner.
//!
//! A fork that never execs would keep the runner's whole image: its
//! descriptors (close-on-exec means nothing without an exec), its
//! environment, its memory (registry tokens, `auth.json` credentials) and
//! its binary behind `/proc/1/exe`, all reachable by the container's root
//! through `/proc/1`. So the sandbox, once the container is fully set up
//! and every privilege dropped, writes the init program to a sealed memfd
//! and execs it from there ([`Init::exec`]): PID 1 is then a fresh image
//! with the container's environment only, and no file of the host's. The
//! program makes itself non-dumpable, forks and execs the workload, forwards
//! signals to it, reaps orphans and exits with the workload's status.
//!
//! The memfd is sealed (no write, grow, shrink, or further seals), so even a
//! process that can open `/proc/1/exe` cannot change what PID 1 runs.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;

/// The init program, compiled from runner/init/init.c by build.rs.
const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata-init"));

/// The init program, loaded into a sealed close-on-exec memfd.
pub struct Init(OwnedFd);

impl Init {
    /// Writes the program to a fresh sealed memfd.
    pub fn load() -> io::Result<Init> {
        sys::fd::sealed_memfd(c"strata-init", PROGRAM).map(Init)
    }

    /// Execs the init with the workload `file` (already resolved through the
    /// container's PATH), its `argv` and `env`; returns only on failure.
    pub fn exec(&self, file: &CStr, argv: &[&CStr], env: &[CString]) -> io::Error {
        let mut args: Vec<&CStr> = vec![c"strata-init", file];
        args.extend(argv);
        sys::fd::exec_fd(self.0.as_raw_fd(), &args, env)
    }
}
