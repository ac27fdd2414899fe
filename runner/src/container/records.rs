//! Container records on disk: locks, lookups and updates.
//!
//! ```text
//! <root>/containers.lock         flock: held while a name is checked and its directory made
//! <root>/containers/<id>/
//!   state.json                   the record (state::State), replaced by atomic rename
//!   config.json                  a detached container's configuration, written once (detached::Config)
//!   lock                         flock: held for every read-modify-write of state.json
//!   container.log[.1]            its output, JSON lines (logs)
//! ```
//!
//! Readers never lock: `state.json` is only ever replaced whole, so a reader
//! sees the old record or the new one. Writers take the container's `lock`
//! and re-read before they change anything, so two runner commands at once
//! (or a command and the monitor) never lose each other's change. Names are
//! unique across every record, running or not: the check and the new
//! directory happen under `containers.lock`.
//!
//! Containers are named by full id, by name, or by a unique prefix of the id;
//! an ambiguous prefix or an unknown name is one line of error.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::state::{self, is_live, read_states, Error, Result, State, Status};
use crate::cgroup::CgroupManager;
use crate::paths::Root;

/// Lookup failures, each one line.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Nothing has this name or id prefix.
    #[error("No such container: {0}")]
    Unknown(String),
    /// Several ids start with this prefix.
    #[error("multiple containers match {prefix:?} ({ids}): give more of the id, or the name")]
    Ambiguous {
        /// What was asked.
        prefix: String,
        /// The 12-digit ids that match.
        ids: String,
    },
}

fn lock_file(path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| Error::Io {
            action: "open",
            path: path.to_owned(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
        action: "lock",
        path: path.to_owned(),
        source: io::Error::from(e),
    })
}

/// Held while a name is checked and the container's directory created.
pub struct NamesLock(#[allow(dead_code)] Flock<File>);

impl NamesLock {
    /// Takes `<root>/containers.lock` (waits for another holder).
    pub fn take(root: &Root) -> Result<NamesLock> {
        Ok(NamesLock(lock_file(&root.dir().join("containers.lock"))?))
    }
}

/// Whether some record (live or not, detached or foreground) has `name`.
/// Foreground records whose runner died do not count (the next command removes them).
pub fn name_taken(root: &Root, name: &str) -> bool {
    read_states(root)
        .into_iter()
        .filter_map(|(_, s)| s)
        .any(|s| s.name.as_deref() == Some(name) && (s.detached || is_live(&s)))
}

/// The record of the container `id`, if it has one.
pub fn load(root: &Root, id: &str) -> Option<State> {
    let bytes = fs::read(root.container(id).join("state.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `state` as the record (atomic rename). Callers hold the container's lock.
pub fn save(root: &Root, state: &State) -> Result<()> {
    let path = root.container(&state.id).join("state.json");
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    crate::fsutil::write_replace(&path, &bytes, false).map_err(|source| Error::Io {
        action: "write",
        path,
        source,
    })
}

/// A container's lock, held while its record is changed.
pub struct ContainerLock(#[allow(dead_code)] Flock<File>);

impl ContainerLock {
    /// Takes `<dir>/lock` of container `id`.
    pub fn take(root: &Root, id: &str) -> Result<ContainerLock> {
        Ok(ContainerLock(lock_file(&root.container(id).join("lock"))?))
    }
}

/// Changes the record of `id` under its lock (re-read first); returns the
/// record as written, or `None` if the container has none (removed).
pub fn update(root: &Root, id: &str, change: impl FnOnce(&mut State)) -> Result<Option<State>> {
    if !root.container(id).is_dir() {
        return Ok(None);
    }
    let _lock = ContainerLock::take(root, id)?;
    let Some(mut s) = load(root, id) else {
        return Ok(None);
    };
    change(&mut s);
    save(root, &s)?;
    Ok(Some(s))
}

/// A detached container whose monitor is gone: unless the monitor recorded
/// its end, the record says `exited` (as Docker shows a container after a
/// reboot: exit 255 unless known, the reason in `State.Error`) and the
/// cgroup (with anything left in it) is removed. Returns whether it changed.
pub fn mark_dead(root: &Root, id: &str) -> Result<bool> {
    if !root.container(id).is_dir() {
        return Ok(false);
    }
    let _lock = ContainerLock::take(root, id)?;
    let Some(mut s) = load(root, id) else {
        return Ok(false);
    };
    if is_live(&s) {
        return Ok(false);
    }
    // Only a record that still says it runs changes (and is written).
    let changed = matches!(s.life.status, Status::Running | Status::Restarting);
    if changed {
        s.life.status = Status::Exited;
        s.life.pid = 0;
        if s.life.exit_code == 0 {
            s.life.exit_code = 255;
        }
        s.life.finished_at = state::now_ms();
        s.life.error = "its monitor is gone (killed, or the host restarted)".into();
        if let Some(h) = &mut s.life.health {
            h.status = "unhealthy".into();
        }
        save(root, &s)?;
    }
    if changed || s.cgroup.paths().iter().any(|p| p.exists()) {
        s.cgroup.destroy()?;
    }
    Ok(changed)
}

/// Finds the container named `what`: a full id, a name, or a unique id prefix.
pub fn find(root: &Root, what: &str) -> Result<State, LookupError> {
    let all: Vec<State> = read_states(root)
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect();
    if let Some(s) = all.iter().find(|s| s.id == what) {
        return Ok(s.clone());
    }
    if let Some(s) = all.iter().find(|s| s.name.as_deref() == Some(what)) {
        return Ok(s.clone());
    }
    let mut matching: Vec<&State> =
        if what.is_empty() || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
            Vec::new()
        } else {
            all.iter().filter(|s| s.id.starts_with(what)).collect()
        };
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    match matching.as_slice() {
        [] => Err(LookupError::Unknown(what.to_owned())),
        [one] => Ok((*one).clone()),
        many => Err(LookupError::Ambiguous {
            prefix: what.to_owned(),
            ids: many
                .iter()
                .map(|s| &s.id[..12.min(s.id.len())])
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Every record, newest first.
pub fn all(root: &Root) -> Vec<State> {
    let mut v: Vec<State> = read_states(root)
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.life.created));
    v
}

/// Removes a container's directory (record, config, logs, upper layer).
pub fn remove_dir(dir: &PathBuf) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            action: "remove",
            path: dir.clone(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::Life;

    fn record(root: &Root, id: &str, name: &str) {
        fs::create_dir_all(root.container(id)).unwrap();
        save(
            root,
            &State {
                id: id.into(),
                name: Some(name.into()),
                image: "img".into(),
                owner_pid: 0,
                owner_start: 0,
                owner_boot: String::new(),
                cgroup: serde_json::from_value(serde_json::json!(
                    {"V2": {"mount": "/nonexistent", "dir": "/nonexistent/strata/x"}}
                ))
                .unwrap(),
                layers: Vec::new(),
                detached: true,
                life: Life::default(),
            },
        )
        .unwrap();
    }

    #[test]
    fn lookups_by_id_name_and_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::prepare(tmp.path().join("state")).unwrap();
        let a = format!("abc1{}", "0".repeat(60));
        let b = format!("abc2{}", "0".repeat(60));
        record(&root, &a, "first");
        record(&root, &b, "second");
        assert_eq!(find(&root, &a).unwrap().id, a);
        assert_eq!(find(&root, "second").unwrap().id, b);
        assert_eq!(find(&root, "abc1").unwrap().id, a);
        let err = find(&root, "abc").unwrap_err().to_string();
        assert_eq!(
            err,
            "multiple containers match \"abc\" (abc100000000, abc200000000): give more of the id, or the name"
        );
        assert_eq!(
            find(&root, "third").unwrap_err().to_string(),
            "No such container: third"
        );
        assert!(name_taken(&root, "first"));
        assert!(!name_taken(&root, "third"));
    }
}
