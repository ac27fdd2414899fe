//! Landlock, a second wall around every container process (PID 1, `exec`,
//! health checks, build steps): after `pivot_root`, file access is allowed
//! beneath the container's own root and nowhere else.
//!
//! The mount namespace already hides the host's files; Landlock covers what
//! it cannot: a host descriptor that leaks into the container by a bug (the
//! class of runc's CVE-2024-21626, a leaked fd to the host's cgroupfs) lets
//! nothing be opened through it, since every open is checked against the
//! file's place in the hierarchy, and a host directory is not beneath the
//! container's root. Files opened before the ruleset (stdio, the console)
//! keep working: Landlock checks at open time.
//!
//! Rules follow the mounts: a writable root gets every right beneath `/`
//! (volumes included: Landlock rules only add rights beneath a path, so a
//! read-only volume under a writable root is kept read-only by its mount
//! alone); a `--read-only` root gets read and execute rights, and each
//! writable mount in it (tmpfs, `/dev`, writable volumes) every right.
//!
//! Scopes (abstract sockets, signals; ABI 6) are not used: an `exec`'d
//! process gets its own domain and could then no longer signal PID 1 or
//! reach its abstract sockets, which `runner exec CTR kill -HUP 1` needs.

use ::landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError,
    RulesetStatus, ABI,
};

use crate::sys;

/// The newest ABI these rules were written and tested against. On an older
/// kernel the crate's best-effort mode drops the rights it lacks; newer
/// rights are left to a change that tests them.
const ABI_TESTED: ABI = ABI::V7;

/// The Landlock ABI the kernel offers, 0 when it has none or it is off.
pub fn kernel_abi() -> u32 {
    sys::proc::landlock_abi()
}

/// The ABI the rules use on this kernel: the lower of the kernel's and the
/// one tested here.
pub fn abi_in_use() -> u32 {
    kernel_abi().min(ABI_TESTED as u32)
}

/// Restricts this process (and all it starts) to its root, `/`, as the
/// module doc says. Runs after `pivot_root`, while the process still holds
/// CAP_SYS_ADMIN in its user namespace, so it needs no `no_new_privs` (a
/// container run with `no-new-privileges=false` keeps setuid binaries).
/// Returns whether the kernel enforces it.
pub(super) fn restrict(read_only_root: bool) -> Result<bool, RulesetError> {
    let all = AccessFs::from_all(ABI_TESTED);
    let read = AccessFs::from_read(ABI_TESTED);
    let writable = if read_only_root {
        writable_mounts()
    } else {
        Vec::new()
    };
    let status = Ruleset::default()
        .handle_access(all)?
        .create()?
        .no_new_privs(false)
        .add_rules(path_beneath_rules(
            ["/"],
            if read_only_root { read } else { all },
        ))?
        .add_rules(path_beneath_rules(writable, all))?
        .restrict_self()?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// Mount points below `/` that are mounted read-write, as this process sees
/// them (`/proc/self/mountinfo`, where mount points are relative to its root).
fn writable_mounts() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (point, options) = (fields.get(4)?, fields.get(5)?);
            let read_write = options.split(',').any(|o| o == "rw");
            (read_write && *point != "/").then(|| unescape(point))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/data/my\040volume"), "/data/my volume");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
