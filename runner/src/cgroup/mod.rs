//! cgroups: one small [`CgroupManager`] trait with a v1 and a v2
//! implementation, and [`Cgroup`] to pick between them at run time.
//!
//! - v1 (per-controller hierarchies, possibly "hybrid" with a cgroup2 tree at
//!   `/sys/fs/cgroup/unified`): one directory per controller under
//!   `<controller>/strata/<id>`; limits in `memory.limit_in_bytes`,
//!   `cpu.cfs_quota_us`, `pids.max`, Docker's device allow-list in
//!   `devices.allow`; OOM kills read from `memory.oom_control`.
//! - v2 (unified): one directory `strata/<id>` with the controllers enabled in
//!   the parents' `cgroup.subtree_control`; limits in `memory.max`,
//!   `cpu.max`, `pids.max`, the device allow-list as an eBPF program; OOM
//!   kills read from `memory.events`.
//!
//! The device allow-list is never skipped quietly: with no v1 `devices`
//! hierarchy, or a v2 program the kernel refuses to attach, creating the
//! cgroup fails unless [`Limits::unenforced_devices`] says to go on
//! (`--unsafe-no-device-cgroup`; Docker has no such switch: dockerd refuses to
//! start without the devices cgroup). A limit asked for on a v1 host that
//! lacks its controller fails too.
//!
//! Removal kills whatever is left inside, then removes the directories.
//! The device allow-list itself is [`devices`].

pub mod devices;
mod rootless;

pub use rootless::Unenforced;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Errors managing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cgroupfs operation failed.
    #[error("cgroup {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// No usable cgroup hierarchy is mounted.
    #[error("no usable cgroup hierarchy under {0}")]
    NoHierarchy(PathBuf),
    /// The device allow-list cannot be enforced.
    #[error(
        "the device allow-list cannot be enforced: {reason}; without it a container could \
         open any device node it creates (the host's disks); fix the host, or pass \
         --unsafe-no-device-cgroup to run without it"
    )]
    DevicesUnenforceable {
        /// What is missing.
        reason: String,
    },
    /// A limit was asked for in rootless mode, where no cgroup can be made.
    #[error(
        "{limit} cannot be enforced in rootless mode here: there is no cgroup v2 subtree \
         delegated to this user (cgroup v1, or v2 without systemd's Delegate=); run \
         without {limit}, or as root"
    )]
    RootlessUnenforced {
        /// The option asked for.
        limit: &'static str,
    },
    /// A limit was asked for but its controller is not mounted.
    #[error("cannot apply {limit}: the cgroup v1 `{controller}` controller is not mounted")]
    ControllerMissing {
        /// The limit asked for.
        limit: &'static str,
        /// The missing controller.
        controller: &'static str,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Resource limits for a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is limited to the same total).
    pub memory: Option<u64>,
    /// CPU quota in CPUs (1.5 = one and a half CPUs).
    pub cpus: Option<f64>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
    /// Run even when the device allow-list cannot be enforced (no v1
    /// `devices` hierarchy, or the v2 eBPF program cannot be attached),
    /// with a warning: `--unsafe-no-device-cgroup`. Otherwise that refuses.
    #[serde(default)]
    pub unenforced_devices: bool,
}

const CPU_PERIOD: u64 = 100_000;

/// What every cgroup implementation offers.
pub trait CgroupManager {
    /// Creates the cgroup and applies `limits`.
    fn create(&self, limits: &Limits) -> Result<()>;
    /// Moves a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Whether the kernel OOM-killed something in the cgroup.
    fn oom_killed(&self) -> bool;
    /// Kills what is left inside and removes the cgroup. Missing is fine.
    fn destroy(&self) -> Result<()>;
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

fn counter(file: &Path, key: &str) -> u64 {
    fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// Kills every process listed in `procs` and removes `dir`, retrying while the
/// kernel finishes tearing the processes down.
fn kill_and_remove(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                // Tasks are exiting; the kernel offers no event for "cgroup empty" on v1.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(Error::Io {
                    action: "remove",
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

/// A cgroup v1 group: one directory per controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct V1 {
    dirs: Vec<(String, PathBuf)>,
}

const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "pids", "freezer", "devices"];

impl V1 {
    fn new(mount: &Path, name: &str) -> V1 {
        let dirs = V1_CONTROLLERS
            .iter()
            .filter(|c| mount.join(c).join("cgroup.procs").exists())
            .map(|c| ((*c).to_owned(), mount.join(c).join("strata").join(name)))
            .collect();
        V1 { dirs }
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }
}

impl CgroupManager for V1 {
    fn create(&self, limits: &Limits) -> Result<()> {
        // Check before creating anything: a controller that is not mounted
        // must not make its part of the policy vanish silently.
        let wanted = [
            (limits.memory.is_some(), "--memory", "memory"),
            (limits.cpus.is_some(), "--cpus", "cpu"),
            (limits.pids.is_some(), "--pids-limit", "pids"),
        ];
        for (asked, limit, controller) in wanted {
            if asked && self.dir(controller).is_none() {
                return Err(Error::ControllerMissing { limit, controller });
            }
        }
        if self.dir("devices").is_none() {
            let reason = "no cgroup v1 `devices` hierarchy is mounted".to_owned();
            if !limits.unenforced_devices {
                return Err(Error::DevicesUnenforceable { reason });
            }
            eprintln!(
                "runner: warning: {reason}: devices are not restricted (--unsafe-no-device-cgroup)"
            );
        }
        for (_, dir) in &self.dirs {
            fs::create_dir_all(dir).map_err(|source| Error::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        if let (Some(bytes), Some(dir)) = (limits.memory, self.dir("memory")) {
            write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &bytes.to_string())?;
            }
        }
        if let (Some(cpus), Some(dir)) = (limits.cpus, self.dir("cpu")) {
            write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD.to_string())?;
            let quota = (cpus * CPU_PERIOD as f64).round() as u64;
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let (Some(pids), Some(dir)) = (limits.pids, self.dir("pids")) {
            write(&dir.join("pids.max"), &pids.to_string())?;
        }
        if let Some(dir) = self.dir("devices") {
            write(&dir.join("devices.deny"), "a")?;
            for rule in devices::ALLOWED {
                write(&dir.join("devices.allow"), &rule.v1())?;
            }
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn oom_killed(&self) -> bool {
        self.dir("memory")
            .is_some_and(|d| counter(&d.join("memory.oom_control"), "oom_kill") > 0)
    }

    fn destroy(&self) -> Result<()> {
        if let Some(freezer) = self.dir("freezer") {
            // Freeze first so nothing forks while the group is being emptied.
            let _ = fs::write(freezer.join("freezer.state"), "FROZEN");
            for (_, dir) in &self.dirs {
                if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            let _ = fs::write(freezer.join("freezer.state"), "THAWED");
        }
        let mut first_error = None;
        for (_, dir) in &self.dirs {
            if let Err(e) = kill_and_remove(dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A cgroup v2 group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct V2 {
    mount: PathBuf,
    dir: PathBuf,
    /// Rootless, in a delegated subtree: no device program (the kernel
    /// refuses to attach one, and a user namespace cannot make device
    /// nodes anyway).
    #[serde(default)]
    no_devices: bool,
}

impl V2 {
    fn new(mount: &Path, name: &str) -> V2 {
        V2 {
            mount: mount.to_owned(),
            dir: mount.join("strata").join(name),
            no_devices: false,
        }
    }

    fn enable_controllers(&self, dir: &Path) -> Result<()> {
        let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = ["memory", "cpu", "pids"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !wanted.is_empty() {
            write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))?;
        }
        Ok(())
    }
}

impl CgroupManager for V2 {
    fn create(&self, limits: &Limits) -> Result<()> {
        let parent = self.mount.join("strata");
        fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            action: "create",
            path: self.dir.clone(),
            source,
        })?;
        self.enable_controllers(&self.mount)?;
        self.enable_controllers(&parent)?;
        if let Some(bytes) = limits.memory {
            write(&self.dir.join("memory.max"), &bytes.to_string())?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        if let Some(cpus) = limits.cpus {
            let quota = (cpus * CPU_PERIOD as f64).round() as u64;
            write(&self.dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD}"))?;
        }
        if let Some(pids) = limits.pids {
            write(&self.dir.join("pids.max"), &pids.to_string())?;
        }
        if self.no_devices {
            return Ok(());
        }
        match devices::attach_filter(&self.dir, &devices::ALLOWED) {
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = format!(
                    "attaching the eBPF device program to {}: {e}",
                    self.dir.display()
                );
                if !limits.unenforced_devices {
                    return Err(Error::DevicesUnenforceable { reason });
                }
                eprintln!("runner: warning: {reason}: devices are not restricted (--unsafe-no-device-cgroup)");
                Ok(())
            }
        }
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn oom_killed(&self) -> bool {
        counter(&self.dir.join("memory.events"), "oom_kill") > 0
    }

    fn destroy(&self) -> Result<()> {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        kill_and_remove(&self.dir)
    }
}

/// Removes empty container cgroups under `<mount>/.../strata/` older than
/// `min_age`: those of containers whose runner died and whose state root is
/// gone too. Only `rmdir` is used, which the kernel refuses for a cgroup that
/// still has processes; the age spares a cgroup being set up right now.
/// Returns how many were removed.
pub fn remove_orphans(mount: &Path, min_age: Duration) -> usize {
    let parents: Vec<PathBuf> = if mount.join("cgroup.controllers").exists() {
        vec![mount.join("strata")]
    } else {
        V1_CONTROLLERS
            .iter()
            .map(|c| mount.join(c).join("strata"))
            .collect()
    };
    let mut removed = 0;
    for parent in parents {
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        // Most entries are the parent's control files: skip them by their
        // directory entry type, without a stat each.
        let dirs = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
        for entry in dirs {
            let old_enough = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age);
            if old_enough && fs::remove_dir(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// The cgroup of one container, on whichever cgroup version the host runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Cgroup {
    /// Legacy or hybrid hierarchy.
    V1(V1),
    /// Unified hierarchy.
    V2(V2),
    /// None at all: rootless mode without a delegated subtree.
    Unenforced(Unenforced),
}

impl Cgroup {
    /// The cgroup for container `name`, under the hierarchy mounted at `mount`
    /// (normally `/sys/fs/cgroup`): v2 if it is a unified mount, else v1.
    /// In rootless mode, a delegated v2 subtree if the user has one, else
    /// [`Unenforced`].
    pub fn for_container(mount: &Path, name: &str) -> Result<Cgroup> {
        if crate::rootless::active() {
            return Ok(rootless::for_container(mount, name));
        }
        match Cgroup::version(mount) {
            Some(2) => Ok(Cgroup::V2(V2::new(mount, name))),
            Some(_) => Ok(Cgroup::V1(V1::new(mount, name))),
            None => Err(Error::NoHierarchy(mount.to_owned())),
        }
    }

    /// The cgroup version mounted at `mount`: 2 for a unified mount, 1 for a
    /// v1 (or hybrid) one with a memory controller, `None` for neither.
    pub fn version(mount: &Path) -> Option<u8> {
        if mount.join("cgroup.controllers").exists() {
            Some(2)
        } else if mount.join("memory").join("cgroup.procs").exists() {
            Some(1)
        } else {
            None
        }
    }

    fn inner(&self) -> &dyn CgroupManager {
        match self {
            Cgroup::V1(c) => c,
            Cgroup::V2(c) => c,
            Cgroup::Unenforced(c) => c,
        }
    }

    /// Directories that make up this cgroup.
    pub fn paths(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(c) => c.dirs.iter().map(|(_, d)| d.clone()).collect(),
            Cgroup::V2(c) => vec![c.dir.clone()],
            Cgroup::Unenforced(_) => Vec::new(),
        }
    }
}

impl CgroupManager for Cgroup {
    fn create(&self, limits: &Limits) -> Result<()> {
        self.inner().create(limits)
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        self.inner().add_process(pid)
    }

    fn oom_killed(&self) -> bool {
        self.inner().oom_killed()
    }

    fn destroy(&self) -> Result<()> {
        self.inner().destroy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNT: &str = "/sys/fs/cgroup";

    #[test]
    fn v1_without_a_devices_hierarchy_refuses_unless_told_to_go_on() {
        // A fake v1 tree: memory and pids mounted, devices not.
        let tmp = tempfile::tempdir().unwrap();
        for c in ["memory", "pids"] {
            fs::create_dir(tmp.path().join(c)).unwrap();
            fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let group = Cgroup::for_container(tmp.path(), "c1").unwrap();
        let err = group.create(&Limits::default()).unwrap_err();
        assert!(matches!(err, Error::DevicesUnenforceable { .. }), "{err}");
        assert!(
            err.to_string().contains("--unsafe-no-device-cgroup"),
            "{err}"
        );
        assert!(
            !tmp.path().join("memory/strata").exists(),
            "refused before creating"
        );
        let cpus = Limits {
            cpus: Some(1.0),
            unenforced_devices: true,
            ..Limits::default()
        };
        assert!(matches!(
            group.create(&cpus),
            Err(Error::ControllerMissing {
                controller: "cpu",
                ..
            })
        ));
        let opted_out = Limits {
            unenforced_devices: true,
            ..Limits::default()
        };
        group.create(&opted_out).unwrap();
        assert!(tmp.path().join("memory/strata/c1").is_dir());
    }

    #[test]
    fn v2_refuses_when_the_device_program_cannot_be_attached() {
        // A plain directory posing as a cgroup2 mount: the kernel refuses to
        // attach a device program to it.
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.controllers"), "").unwrap();
        let group = Cgroup::for_container(tmp.path(), "c2").unwrap();
        assert!(matches!(group, Cgroup::V2(_)));
        let err = group.create(&Limits::default()).unwrap_err();
        assert!(matches!(err, Error::DevicesUnenforceable { .. }), "{err}");
        let opted_out = Limits {
            unenforced_devices: true,
            ..Limits::default()
        };
        group.create(&opted_out).unwrap();
    }

    #[test]
    fn orphan_removal_takes_empty_old_groups_and_spares_busy_ones() {
        let mount = Path::new(MOUNT);
        let empty =
            Cgroup::for_container(mount, &format!("orphan-empty-{}", std::process::id())).unwrap();
        let busy =
            Cgroup::for_container(mount, &format!("orphan-busy-{}", std::process::id())).unwrap();
        empty.create(&Limits::default()).unwrap();
        busy.create(&Limits::default()).unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        busy.add_process(sleeper.id() as i32).unwrap();
        // A young group is spared.
        remove_orphans(mount, Duration::from_secs(3600));
        assert!(empty.paths().iter().all(|p| p.exists()));
        remove_orphans(mount, Duration::ZERO);
        assert!(empty.paths().iter().all(|p| !p.exists()));
        assert!(busy.paths().iter().all(|p| p.exists()));
        busy.destroy().unwrap();
        let _ = sleeper.wait();
        assert!(busy.paths().iter().all(|p| !p.exists()));
    }
}
