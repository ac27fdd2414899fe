//! Linux capabilities: names, Docker's default set, `--cap-add/--cap-drop`
//! resolution, and applying a set to the current process (bounding set,
//! ambient set cleared, then effective/permitted through `capset`, with the
//! inheritable set empty).

use std::fmt;
use std::io;
use std::str::FromStr;

use crate::sys;

/// Errors about capabilities.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown capability name.
    #[error("unknown capability {0:?}")]
    Unknown(String),
    /// A syscall failed while applying capabilities.
    #[error("{call}: {source}")]
    Sys {
        /// The failing call.
        call: &'static str,
        /// OS error.
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Capability names, indexed by number (`CAP_` prefix dropped).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default capability set.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// One capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

impl Capability {
    /// The capability number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// Every capability this runner knows.
    pub fn all() -> impl Iterator<Item = Capability> {
        (0..NAMES.len() as u8).map(Capability)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP_{}", NAMES[self.0 as usize])
    }
}

impl FromStr for Capability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES
            .iter()
            .position(|n| *n == bare)
            .map(|i| Capability(i as u8))
            .ok_or_else(|| Error::Unknown(s.to_owned()))
    }
}

/// Docker's default set with `--cap-add` / `--cap-drop` applied (`ALL` allowed in both).
pub fn resolve(add: &[String], drop: &[String]) -> Result<Vec<Capability>> {
    let mut set: Vec<Capability> = DOCKER_DEFAULT
        .iter()
        .map(|n| n.parse().expect("default names are valid"))
        .collect();
    if drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")) {
        set.clear();
    } else {
        for d in drop {
            let c: Capability = d.parse()?;
            set.retain(|x| *x != c);
        }
    }
    if add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        set = Capability::all().collect();
    } else {
        for a in add {
            set.push(a.parse()?);
        }
    }
    set.sort();
    set.dedup();
    Ok(set)
}

fn mask(set: &[Capability]) -> [u32; 2] {
    let mut m = [0u32; 2];
    for c in set {
        m[(c.0 / 32) as usize] |= 1 << (c.0 % 32);
    }
    m
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u8 - 1)
}

fn sys(call: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { call, source }
}

/// Drops every capability outside `keep` from the bounding set and clears the
/// ambient set. Needs CAP_SETPCAP, so it runs before switching user.
pub fn limit_bounding(keep: &[Capability]) -> Result<()> {
    for n in 0..=last_cap() {
        if !keep.iter().any(|c| c.0 == n) {
            sys::caps::drop_bounding(n).map_err(sys("prctl(PR_CAPBSET_DROP)"))?;
        }
    }
    sys::caps::clear_ambient().map_err(sys("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"))
}

/// Sets the effective and permitted sets to exactly `set` and empties the
/// inheritable set, as Docker does since CVE-2022-24769: with inheritable
/// capabilities, a program carrying inheritable file capabilities gains
/// them in its permitted set on `execve`, even run by a non-root user (the
/// ambient set is emptied by [`limit_bounding`]).
pub fn set_process_caps(set: &[Capability]) -> Result<()> {
    let m = mask(set);
    sys::caps::capset(m, m, [0; 2]).map_err(sys("capset"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_with_add_and_drop() {
        let set = resolve(&["sys_admin".into()], &["CAP_NET_RAW".into()]).unwrap();
        let names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
        assert!(names.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(!names.contains(&"CAP_NET_RAW".to_owned()));
        assert_eq!(set.len(), DOCKER_DEFAULT.len());
        assert!(resolve(&["NOPE".into()], &[]).is_err());
        assert!(resolve(&[], &["all".into()]).unwrap().is_empty());
    }
}
