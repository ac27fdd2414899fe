//! seccomp: profiles in Docker's JSON format, the built-in default profile
//! (equivalent to Docker's), compilation to BPF through libseccomp, a cache
//! of compiled filters, and loading a compiled filter.
//!
//! Compiling with libseccomp costs milliseconds, so a filter is compiled once
//! per (profile, capability set, architecture) and cached under
//! `<root>/seccomp/<sha256>.bpf`. Every later run only reads a few kilobytes
//! and hands them to `prctl(PR_SET_SECCOMP)` in the container process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};

use crate::caps::Capability;
use crate::digest;
use crate::paths::Root;

/// Errors about seccomp profiles and filters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile file could not be read or parsed.
    #[error("seccomp profile {path}: {message}")]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A profile uses an action or operator the runner does not know.
    #[error("seccomp profile: unsupported {what} {value:?}")]
    Unsupported {
        /// Kind of thing.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// libseccomp refused the filter.
    #[error("building the seccomp filter: {0}")]
    Build(#[from] libseccomp::error::SeccompError),
    /// Reading or writing the compiled filter cache failed.
    #[error("seccomp filter cache {path}: {source}")]
    Cache {
        /// Cache file.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The kernel refused the filter.
    #[error("loading the seccomp filter: {0}")]
    Load(io::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Action for syscalls no rule matches.
    pub default_action: String,
    /// errno for an `SCMP_ACT_ERRNO` default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// One rule of a profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Syscall names.
    pub names: Vec<String>,
    /// Action when the rule matches.
    pub action: String,
    /// errno for `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// The rule applies only if these hold.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub includes: Filter,
    /// The rule applies only if these do not hold.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub excludes: Filter,
}

/// Conditions on capabilities and architectures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Architectures in Go naming (`amd64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty()
    }
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument index.
    pub index: u32,
    /// Value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// Second value (the datum for `SCMP_CMP_MASKED_EQ`).
    #[serde(default)]
    pub value_two: u64,
    /// Operator (`SCMP_CMP_EQ`...).
    pub op: String,
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls Docker's default profile allows unconditionally.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls allowed only when the container holds a capability.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

fn allow(names: &[&str]) -> Rule {
    Rule {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action: "SCMP_ACT_ALLOW".to_owned(),
        ..Rule::default()
    }
}

fn arg(index: u32, value: u64, value_two: u64, op: &str) -> Arg {
    Arg {
        index,
        value,
        value_two,
        op: op.to_owned(),
    }
}

fn caps_filter(cap: &str) -> Filter {
    Filter {
        caps: vec![cap.to_owned()],
        arches: Vec::new(),
    }
}

fn arch_filter(arches: &[&str]) -> Filter {
    Filter {
        caps: Vec::new(),
        arches: arches.iter().map(|a| (*a).to_owned()).collect(),
    }
}

impl Profile {
    /// The default profile, equivalent to Docker's: EPERM unless allowed,
    /// Docker's argument rules for `clone`, `personality` and `socket`, and
    /// ENOSYS for `clone3` so that libcs fall back to `clone`.
    pub fn docker_default() -> Profile {
        let mut rules = vec![
            allow(ALLOWED),
            allow(&["process_vm_readv", "process_vm_writev", "ptrace"]),
            Rule {
                args: vec![arg(0, 40, 0, "SCMP_CMP_NE")], // AF_VSOCK
                ..allow(&["socket"])
            },
        ];
        for persona in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
            rules.push(Rule {
                args: vec![arg(0, persona, 0, "SCMP_CMP_EQ")],
                ..allow(&["personality"])
            });
        }
        rules.push(Rule {
            includes: arch_filter(&["amd64", "x32"]),
            ..allow(&["arch_prctl"])
        });
        rules.push(Rule {
            includes: arch_filter(&["amd64", "x32", "x86"]),
            ..allow(&["modify_ldt"])
        });
        rules.push(Rule {
            includes: arch_filter(&["arm", "arm64"]),
            ..allow(&[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ])
        });
        for (cap, names) in BY_CAPABILITY {
            rules.push(Rule {
                includes: caps_filter(cap),
                ..allow(names)
            });
        }
        rules.push(Rule {
            args: vec![arg(0, CLONE_NAMESPACE_FLAGS, 0, "SCMP_CMP_MASKED_EQ")],
            excludes: caps_filter("CAP_SYS_ADMIN"),
            ..allow(&["clone"])
        });
        rules.push(Rule {
            names: vec!["clone3".to_owned()],
            action: "SCMP_ACT_ERRNO".to_owned(),
            errno_ret: Some(ENOSYS),
            excludes: caps_filter("CAP_SYS_ADMIN"),
            ..Rule::default()
        });
        Profile {
            default_action: "SCMP_ACT_ERRNO".to_owned(),
            default_errno_ret: Some(EPERM),
            syscalls: rules,
        }
    }

    /// Reads a profile file in Docker's format.
    pub fn load(path: &Path) -> Result<Profile> {
        let bytes = fs::read(path).map_err(|e| Error::Profile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Profile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The rules that apply to a container holding `caps` on this architecture,
    /// with includes/excludes resolved away.
    pub fn effective_rules(&self, caps: &[Capability]) -> Vec<Rule> {
        let arch = crate::oci::Platform::host().architecture;
        let has_cap = |c: &String| caps.iter().any(|k| k.to_string().eq_ignore_ascii_case(c));
        let has_arch = |a: &String| *a == arch || (arch == "amd64" && (a == "x86" || a == "x32"));
        self.syscalls
            .iter()
            .filter(|r| {
                r.includes.caps.iter().all(has_cap)
                    && (r.includes.arches.is_empty() || r.includes.arches.iter().any(has_arch))
                    && (r.excludes.caps.is_empty() || !r.excludes.caps.iter().any(has_cap))
                    && !r.excludes.arches.contains(&arch)
            })
            .map(|r| Rule {
                includes: Filter::default(),
                excludes: Filter::default(),
                ..r.clone()
            })
            .collect()
    }
}

fn action(name: &str, errno: Option<u32>, default_errno: u32) -> Result<ScmpAction> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(default_errno) as i32),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.unwrap_or(0) as u16),
        other => {
            return Err(Error::Unsupported {
                what: "action",
                value: other.to_owned(),
            })
        }
    })
}

fn compare(a: &Arg) -> Result<ScmpArgCompare> {
    let (op, datum) = match a.op.as_str() {
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, a.value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, a.value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, a.value),
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, a.value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, a.value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, a.value),
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(a.value), a.value_two),
        other => {
            return Err(Error::Unsupported {
                what: "operator",
                value: other.to_owned(),
            })
        }
    };
    Ok(ScmpArgCompare::new(a.index, op, datum))
}

/// Compiles a profile for a capability set into a BPF program (raw `sock_filter` array).
pub fn compile(profile: &Profile, caps: &[Capability]) -> Result<Vec<u8>> {
    let default_errno = profile.default_errno_ret.unwrap_or(EPERM);
    let default = action(&profile.default_action, Some(default_errno), default_errno)?;
    let mut ctx = ScmpFilterContext::new(default)?;
    if ScmpArch::native() == ScmpArch::X8664 {
        ctx.add_arch(ScmpArch::X86)?;
        ctx.add_arch(ScmpArch::X32)?;
    }
    ctx.set_ctl_nnp(false)?;
    for rule in profile.effective_rules(caps) {
        let act = action(&rule.action, rule.errno_ret, default_errno)?;
        if act == default {
            continue;
        }
        let conditions = rule.args.iter().map(compare).collect::<Result<Vec<_>>>()?;
        for name in &rule.names {
            // Names unknown to this libseccomp (or this architecture) are skipped, as Docker does.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, syscall)
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions)
            };
            // A rule libseccomp cannot express for one of the arches is skipped, as runc does.
            drop(added);
        }
    }
    let tmp = tempfile_in_memory()?;
    ctx.export_bpf(&tmp).map_err(Error::Build)?;
    read_back(tmp)
}

fn tempfile_in_memory() -> Result<fs::File> {
    let name = c"strata-seccomp";
    // SAFETY: memfd_create with a valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Load(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn read_back(mut f: fs::File) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut out))
        .map_err(Error::Load)?;
    Ok(out)
}

/// Returns the compiled filter for `profile` and `caps`, compiling it only
/// if the cache under `root` does not have it yet.
pub fn cached_filter(root: &Root, profile: &Profile, caps: &[Capability]) -> Result<Vec<u8>> {
    let key_input = serde_json::to_vec(&(
        profile,
        caps.iter().map(|c| c.number()).collect::<Vec<_>>(),
        std::env::consts::ARCH,
        libseccomp::ScmpVersion::current()
            .map(|v| (v.major, v.minor, v.micro))
            .ok(),
    ))
    .expect("profiles serialize");
    let key = digest::sha256_of(&key_input);
    let path = root.seccomp_cache(&key);
    match fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() && bytes.len() % 8 == 0 => return Ok(bytes),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Cache { path, source }),
    }
    let bpf = compile(profile, caps)?;
    crate::images::write_atomic(&path, &bpf).map_err(|source| Error::Cache {
        path: path.clone(),
        source,
    })?;
    Ok(bpf)
}

/// Loads a compiled filter into the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load(bpf: &[u8]) -> Result<()> {
    let prog = libc::sock_fprog {
        len: (bpf.len() / 8) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at a valid sock_filter array for the call's duration.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(Error::Load(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_resolves_caps() {
        let p = Profile::docker_default();
        let plain = p.effective_rules(&[]);
        let names = |rules: &[Rule]| -> Vec<String> {
            rules.iter().flat_map(|r| r.names.clone()).collect()
        };
        assert!(!names(&plain).contains(&"mount".to_owned()));
        assert!(names(&plain).contains(&"clone3".to_owned()));
        let admin = p.effective_rules(&["SYS_ADMIN".parse().unwrap()]);
        assert!(names(&admin).contains(&"mount".to_owned()));
        let clone3 = admin
            .iter()
            .filter(|r| r.names.contains(&"clone3".to_owned()));
        assert!(clone3.clone().all(|r| r.action == "SCMP_ACT_ALLOW"));
    }

    #[test]
    fn compiles_to_whole_bpf_instructions() {
        let bpf = compile(&Profile::docker_default(), &[]).unwrap();
        assert!(bpf.len() > 8 && bpf.len().is_multiple_of(8));
    }
}
