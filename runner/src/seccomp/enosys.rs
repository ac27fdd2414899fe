//! The ENOSYS stub put in front of a compiled filter.
//!
//! A profile is a list of the syscalls that existed when it was written; the
//! kernel keeps adding new ones (`fchmodat2` 452, `mseal` 462 on x86_64...).
//! Refusing those with the default EPERM breaks programs that would run with
//! an older call: libcs fall back only on ENOSYS. So, as runc does for
//! Docker, every syscall number above the highest the profile names (on that
//! architecture) gets ENOSYS before libseccomp's program runs:
//!
//! ```text
//!     ld  arch
//!     jeq AUDIT_ARCH_X86_64 -> x86_64      (one test per architecture)
//!     jeq AUDIT_ARCH_I386   -> i386
//!     ja  main
//! x86_64:
//!     ld  nr
//!     jset X32_SYSCALL_BIT -> main         (the x32 ABI is left to main)
//!     jgt highest -> enosys, else main
//! enosys:
//!     ret ERRNO(ENOSYS)
//! i386: ...
//! main:                                    (libseccomp's program)
//! ```

use libseccomp::{ScmpArch, ScmpSyscall};

use super::profile::Profile;
use super::ENOSYS;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JSET_K: u16 = 0x45;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offsets of `nr` and `arch` in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;

/// An architecture's `AUDIT_ARCH_*` value, for those the stub covers.
fn audit_arch(arch: ScmpArch) -> Option<u32> {
    match arch {
        ScmpArch::X8664 => Some(0xC000_003E),
        ScmpArch::X86 => Some(0x4000_0003),
        ScmpArch::Aarch64 => Some(0xC000_00B7),
        ScmpArch::Arm => Some(0x4000_0028),
        _ => None,
    }
}

/// The highest syscall number `profile` names on `arch`, whatever the rule
/// (a syscall the profile denies is still one it knows).
pub fn highest_known(profile: &Profile, arch: ScmpArch) -> Option<u32> {
    profile
        .syscalls
        .iter()
        .flat_map(|r| &r.names)
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok())
        // Negative numbers are libseccomp's stand-ins for calls the arch lacks.
        .filter_map(|s| u32::try_from(s.as_raw_syscall()).ok())
        .max()
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..2].copy_from_slice(&code.to_ne_bytes());
    out[2] = jt;
    out[3] = jf;
    out[4..].copy_from_slice(&k.to_ne_bytes());
    out
}

/// The stub for `profile` on `arches` (those without an audit value or a
/// known syscall are left to the main program), as raw `sock_filter`s; it
/// falls through to whatever follows it.
pub fn stub(profile: &Profile, arches: &[ScmpArch]) -> Vec<u8> {
    let covered: Vec<(u32, u32, bool)> = arches
        .iter()
        .filter_map(|a| {
            Some((
                audit_arch(*a)?,
                highest_known(profile, *a)?,
                *a == ScmpArch::X8664,
            ))
        })
        .collect();
    if covered.is_empty() {
        return Vec::new();
    }
    let block_len = |x32: bool| if x32 { 4 } else { 3 };
    let head = covered.len() + 2;
    let total = head + covered.iter().map(|c| block_len(c.2)).sum::<usize>();
    // Distance from the instruction at `from` to the one at `to`.
    let skip = |from: usize, to: usize| u8::try_from(to - from - 1).expect("the stub is short");
    let mut out = Vec::with_capacity(total * 8);
    out.extend(insn(LD_W_ABS, 0, 0, ARCH));
    let mut start = head;
    for (i, (audit, _, x32)) in covered.iter().enumerate() {
        out.extend(insn(JEQ_K, skip(1 + i, start), 0, *audit));
        start += block_len(*x32);
    }
    out.extend(insn(JA, 0, 0, (total - head) as u32));
    let mut at = head;
    for (_, highest, x32) in &covered {
        out.extend(insn(LD_W_ABS, 0, 0, NR));
        at += 1;
        if *x32 {
            out.extend(insn(JSET_K, skip(at, total), 0, X32_SYSCALL_BIT));
            at += 1;
        }
        out.extend(insn(JGT_K, 0, skip(at, total), *highest));
        out.extend(insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS));
        at += 2;
    }
    debug_assert_eq!(at, total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_known_syscall_is_below_those_added_since() {
        let p = Profile::docker_default();
        let highest = highest_known(&p, ScmpArch::X8664).unwrap();
        // futex_waitv (449) is allowed; fchmodat2 (452) came later.
        assert!((449..452).contains(&highest), "{highest}");
        let bpf = stub(&p, &[ScmpArch::X8664, ScmpArch::X86]);
        // ld, 2 x jeq, ja, x86_64 block (4), i386 block (3).
        assert_eq!(bpf.len(), 11 * 8);
    }
}
