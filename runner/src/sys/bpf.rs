//! BPF programs handed to the kernel: a classic-BPF seccomp filter for the
//! calling thread, and an eBPF cgroup device program (`bpf(2)` load and
//! attach). The programs themselves are built by `seccomp` and
//! `cgroup::devices`; this module only passes them in.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// Loads a compiled seccomp filter (`struct sock_filter` array, 8 bytes per
/// instruction) into the calling thread (`prctl(PR_SET_SECCOMP)`). Needs
/// no_new_privs or CAP_SYS_ADMIN.
pub(crate) fn load_seccomp(filter: &[u8]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: (filter.len() / 8) as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at a valid sock_filter array for the call's duration
    // (the kernel reads `len` whole instructions, which fit in `filter`).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    check(rc.into()).map(drop)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Insn {
    /// Opcode.
    pub(crate) code: u8,
    /// Source register (high nibble) and destination register (low nibble).
    pub(crate) regs: u8,
    /// Offset (jump distance or memory offset).
    pub(crate) off: i16,
    /// Immediate.
    pub(crate) imm: i32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program named `strata`
/// under `license`; the kernel verifies it. Returns the program descriptor.
pub(crate) fn load_cgroup_device(insns: &[Insn], license: &std::ffi::CStr) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let mut name = [0u8; 16];
    name[..6].copy_from_slice(b"strata");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: bpf(BPF_PROG_LOAD) with an attr that points at live buffers.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches the cgroup device program `prog` to the cgroup v2 directory
/// open at `cgroup` (`BPF_F_ALLOW_MULTI`).
pub(crate) fn attach_cgroup_device(prog: &OwnedFd, cgroup: &File) -> io::Result<()> {
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) with valid descriptors.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    })
    .map(drop)
}
