//! Per-container state on disk, and cleanup of containers whose runner died.
//!
//! Each container has `<root>/containers/<id>/state.json` naming the
//! runner process that owns it (pid plus its start time, so a recycled pid is
//! not mistaken for the owner), its cgroup and the layers it uses. Mounts need
//! no record: they live only in the container's own mount namespace and
//! vanish with it. Every runner invocation calls [`clean_stale`], which kills
//! and removes the cgroup and state of any foreground container whose owner
//! is gone; a detached one (`run -d`) whose monitor is gone is marked dead
//! and its cgroup removed, its record kept for `ps -a`, `logs` and `rm`
//! (see [`crate::container::records`]). The owner is named by boot id too,
//! so after a reboot no new process is taken for it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Cgroup, CgroupManager};
use crate::image::digest::Digest;
use crate::paths::Root;

/// Errors handling container state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("container state {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// A live container already has this name.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// Removing a cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is recorded about a running container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Container id.
    pub id: String,
    /// `--name`, if given.
    pub name: Option<String>,
    /// Image reference.
    pub image: String,
    /// pid of the owning runner.
    pub owner_pid: i32,
    /// Start time of the owning runner (clock ticks since boot).
    pub owner_start: u64,
    /// The boot the owner ran in (`/proc/sys/kernel/random/boot_id`): after
    /// a reboot, a new process with the same pid and start time is not it.
    #[serde(default)]
    pub owner_boot: String,
    /// The container's cgroup.
    pub cgroup: Cgroup,
    /// diff_ids of the layers in use.
    pub layers: Vec<Digest>,
    /// Whether the container lives on (`run -d`): its directory stays after
    /// it exits, until `rm`. A foreground `run` removes its own.
    #[serde(default)]
    pub detached: bool,
    /// What it is doing now, and how it ended (see [`Life`]).
    #[serde(default, flatten)]
    pub life: Life,
}

/// A container's status, Docker's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded, never started.
    Created,
    /// Its PID 1 runs (or is being set up).
    #[default]
    Running,
    /// Between two runs, waiting out the restart back-off.
    Restarting,
    /// Ended.
    Exited,
    /// Its monitor vanished without recording the end (killed, or the host rebooted).
    Dead,
}

impl Status {
    /// Docker's name for it (`running`, `exited`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// The changing part of a container's record. Times are Unix milliseconds (0: never).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Life {
    /// Status.
    #[serde(default)]
    pub status: Status,
    /// When the container was created.
    #[serde(default)]
    pub created: u64,
    /// Host pid of its PID 1 while it runs (0 otherwise).
    #[serde(default)]
    pub pid: i32,
    /// Exit status of the last run (128+signal when killed).
    #[serde(default)]
    pub exit_code: i32,
    /// When the last run started.
    #[serde(default)]
    pub started_at: u64,
    /// When the last run ended.
    #[serde(default)]
    pub finished_at: u64,
    /// How many times the restart policy restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// The memory cgroup OOM-killed something in the last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// `stop`, `rm -f` or `restart` asked it to end: no restart policy applies.
    #[serde(default)]
    pub stop_requested: bool,
    /// Why the last run failed to start, or why the record is dead.
    #[serde(default)]
    pub error: String,
    /// The command it runs (argv), for `ps`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Health-check state, when the container has a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// A health check's state (`State.Health` in `inspect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Consecutive failures.
    pub failing_streak: u32,
    /// The last results, oldest first (at most five).
    pub log: Vec<HealthResult>,
}

/// One health-check run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthResult {
    /// Start, Unix milliseconds.
    pub start: u64,
    /// End, Unix milliseconds.
    pub end: u64,
    /// Exit code (0 healthy, anything else unhealthy; -1 timed out).
    pub exit_code: i32,
    /// The start of its output.
    pub output: String,
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Start time of a process in clock ticks since boot, if it exists and has
/// not exited (a zombie waiting for its parent does not count).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    if after_comm.starts_with(['Z', 'X']) {
        return None;
    }
    after_comm.split(' ').nth(19)?.parse().ok()
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Every container directory and its record (`None`: unreadable or not yet written).
pub fn read_states(root: &Root) -> Vec<(PathBuf, Option<State>)> {
    let Ok(entries) = fs::read_dir(root.containers_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let dir = e.path();
            let state = fs::read(dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            (dir, state)
        })
        .collect()
}

/// This boot's id (empty if the kernel does not say).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the process that owns the container (its monitor, or the
/// foreground runner) still runs: same boot, same pid, same start time.
pub fn is_live(state: &State) -> bool {
    (state.owner_boot.is_empty() || state.owner_boot == boot_id())
        && process_start_time(state.owner_pid) == Some(state.owner_start)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", dir)(e)),
        _ => Ok(()),
    }
}

/// Removes what dead runners left behind. Returns the ids cleaned.
/// Also removes empty container cgroups a minute old whose state went away
/// with a deleted state root (see [`cgroup::remove_orphans`]).
pub fn clean_stale(root: &Root) -> Result<Vec<String>> {
    cgroup::remove_orphans(Path::new("/sys/fs/cgroup"), Duration::from_secs(60));
    let mut cleaned = Vec::new();
    for (dir, state) in read_states(root) {
        match state {
            Some(s) if is_live(&s) => {}
            // An ended one was cleaned when it ended: nothing to read or write.
            Some(s)
                if s.detached && !matches!(s.life.status, Status::Running | Status::Restarting) => {
            }
            Some(s) if s.detached => {
                if crate::container::records::mark_dead(root, &s.id)? {
                    cleaned.push(s.id);
                }
            }
            Some(s) => {
                s.cgroup.destroy()?;
                remove_dir(&dir)?;
                cleaned.push(s.id);
            }
            None => {
                // No state.json: either being created right now, or its
                // creator died before writing it. Only the latter is old.
                let old = fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60);
                if old {
                    remove_dir(&dir)?;
                }
            }
        }
    }
    // Leases of containers whose runner or monitor died: veth, rules, hosts entries.
    let live = |id: &str| crate::container::records::load(root, id).is_some_and(|s| is_live(&s));
    if let Err(e) = crate::network::clean_stale(root, live) {
        eprintln!("runner: cleaning up networks after an earlier crash: {e}");
    }
    Ok(cleaned)
}

/// diff_ids used by live containers (kept by `prune`).
pub fn layers_in_use(root: &Root) -> BTreeSet<Digest> {
    read_states(root)
        .into_iter()
        .filter_map(|(_, s)| s)
        .filter(|s| s.detached || is_live(s))
        .flat_map(|s| s.layers)
        .collect()
}

/// A container's state directory; dropping it destroys the cgroup and removes
/// the directory, so every exit path of `runner run` cleans up.
pub struct ContainerState {
    dir: PathBuf,
    state: State,
}

impl ContainerState {
    /// Creates the state directory (0700, with `upper/`, `work/`, `rootfs/`)
    /// and records `state`, checking the name is free.
    pub fn create(root: &Root, state: State) -> Result<ContainerState> {
        let _names = crate::container::records::NamesLock::take(root)?;
        if let Some(name) = &state.name {
            if crate::container::records::name_taken(root, name) {
                return Err(Error::NameInUse(name.clone()));
            }
        }
        let dir = root.container(&state.id);
        // Private: root inside the container can leave set-uid-root files
        // and device nodes in upper/.
        fs::create_dir_all(root.dir()).map_err(io_err("create", root.dir()))?;
        for d in [root.containers_dir(), dir.clone()] {
            crate::paths::create_private_dir(&d).map_err(io_err("create", &d))?;
        }
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        let guard = ContainerState { dir, state };
        let path = guard.dir.join("state.json");
        let bytes = serde_json::to_vec_pretty(&guard.state).expect("state serializes");
        // No fsync: after a reboot there is no container, cgroup or mount to clean.
        crate::fsutil::write_replace(&path, &bytes, false).map_err(io_err("write", &path))?;
        Ok(guard)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ContainerState {
    fn drop(&mut self) {
        if let Err(e) = self.state.cgroup.destroy() {
            eprintln!("runner: warning: {e}");
        }
        if let Err(e) = remove_dir(&self.dir) {
            eprintln!("runner: warning: {e}");
        }
    }
}
