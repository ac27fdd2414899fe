//! cgroups in rootless mode. The user may only make cgroups where one was
//! delegated to it: on cgroup v2, the subtree systemd gives a user's
//! service manager (`Delegate=`), found as the topmost ancestor of the
//! runner's own cgroup whose `cgroup.procs` and `cgroup.subtree_control`
//! the user can write. Containers then get `<that>/strata/<id>` with
//! their limits, as root's do (no device program: the kernel refuses it to
//! a user, and a user namespace cannot make device nodes anyway).
//!
//! Without one (cgroup v1 like the CI machine, or v2 without delegation)
//! there is no cgroup: [`Unenforced`] says so once per process, and
//! refuses `--memory`, `--cpus` and `--pids-limit` rather than drop them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::unistd::AccessFlags;
use serde::{Deserialize, Serialize};

use super::{Cgroup, CgroupManager, Error, Limits, Result, V2};

/// No cgroup: rootless mode without a delegated subtree.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Unenforced;

static WARNED: AtomicBool = AtomicBool::new(false);

impl CgroupManager for Unenforced {
    fn create(&self, limits: &Limits) -> Result<()> {
        for (asked, limit) in [
            (limits.memory.is_some(), "--memory"),
            (limits.cpus.is_some(), "--cpus"),
            (limits.pids.is_some(), "--pids-limit"),
        ] {
            if asked {
                return Err(Error::RootlessUnenforced { limit });
            }
        }
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "runner: rootless mode without a delegated cgroup v2 subtree: memory, CPU \
                 and pids limits are not enforced (--memory, --cpus, --pids-limit are refused)"
            );
        }
        Ok(())
    }

    fn add_process(&self, _pid: i32) -> Result<()> {
        Ok(())
    }

    fn oom_killed(&self) -> bool {
        false
    }

    fn destroy(&self) -> Result<()> {
        Ok(())
    }
}

/// The cgroup of container `name` in rootless mode.
pub(super) fn for_container(mount: &Path, name: &str) -> Cgroup {
    match delegated_subtree(mount) {
        Some(base) => Cgroup::V2(V2 {
            dir: base.join("strata").join(name),
            mount: base,
            no_devices: true,
        }),
        None => Cgroup::Unenforced(Unenforced),
    }
}

/// The topmost ancestor of this process's v2 cgroup the user may manage.
fn delegated_subtree(mount: &Path) -> Option<PathBuf> {
    if !mount.join("cgroup.controllers").exists() {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let own_dir = mount.join(path.trim_start_matches('/'));
    let mut candidates: Vec<&Path> = own_dir
        .ancestors()
        .filter(|d| d.starts_with(mount) && *d != mount)
        .collect();
    candidates.reverse();
    candidates
        .into_iter()
        .find(|d| {
            ["cgroup.procs", "cgroup.subtree_control"]
                .iter()
                .all(|f| nix::unistd::access(&d.join(f), AccessFlags::W_OK).is_ok())
        })
        .map(Path::to_owned)
}
