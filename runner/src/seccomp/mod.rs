//! seccomp: profiles in Docker's JSON format ([`profile`]), the built-in
//! default profile, Docker's, kept as data ([`docker_default`]), compilation
//! to BPF through libseccomp, a cache of compiled filters, and loading a
//! compiled filter.
//!
//! Syscalls newer than a profile knows get ENOSYS, not the default EPERM, as
//! runc does for Docker: libcs fall back to an older call only on ENOSYS
//! (`fchmodat2` to `fchmodat`, say), and a profile can only deny what existed
//! when it was written. The compiled program starts with a short stub that
//! returns ENOSYS for every syscall number above the highest the profile
//! names, per architecture; the rest is libseccomp's.
//!
//! Compiling with libseccomp costs milliseconds, so a filter is compiled once
//! per (profile, capability set, architecture) and cached under
//! `<root>/seccomp/<sha256>.bpf`. Every later run only reads a few kilobytes
//! and hands them to `prctl(PR_SET_SECCOMP)` in the container process.

mod docker_default;
mod enosys;
pub mod profile;

use std::fs;
use std::io;
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

pub use profile::{Arg, Filter, Profile, Rule};

use crate::caps::Capability;
use crate::image::digest;
use crate::paths::Root;
use crate::sys;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// Bumped whenever the compiled program changes for the same inputs, so that
/// filters cached by an older runner are not used.
const FILTER_FORMAT: u32 = 2;

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
    let mut arches = vec![ScmpArch::native()];
    if ScmpArch::native() == ScmpArch::X8664 {
        ctx.add_arch(ScmpArch::X86)?;
        ctx.add_arch(ScmpArch::X32)?;
        arches.push(ScmpArch::X86);
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
    // A profile that allows by default lets new syscalls through anyway.
    let mut bpf = match default {
        ScmpAction::Allow | ScmpAction::Log => Vec::new(),
        _ => enosys::stub(profile, &arches),
    };
    bpf.extend(read_back(tmp)?);
    Ok(bpf)
}

fn tempfile_in_memory() -> Result<fs::File> {
    sys::fd::memfd(c"strata-seccomp").map_err(Error::Load)
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
        FILTER_FORMAT,
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
    crate::fsutil::write_atomic(&path, &bpf).map_err(|source| Error::Cache {
        path: path.clone(),
        source,
    })?;
    Ok(bpf)
}

/// Loads a compiled filter into the calling thread. Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load(bpf: &[u8]) -> Result<()> {
    sys::bpf::load_seccomp(bpf).map_err(Error::Load)
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
