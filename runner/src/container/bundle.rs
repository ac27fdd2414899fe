//! `runner bundle`: write an OCI runtime-spec bundle — `rootfs/` with every
//! layer applied in order (whiteouts applied as deletions) and a
//! `config.json` expressing the same container `runner run` would start:
//! namespaces, mounts, masked and read-only paths, capabilities,
//! `no_new_privs`, the resolved seccomp rules and cgroup limits.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::image::store::{self as image_store, ImageRecord, ImageStore};
use crate::image::unpack::{self, Whiteouts};
use crate::spec::{self, ContainerSpec, Network};

/// Errors writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle directory already has a rootfs or config not written by `runner bundle`.
    #[error("{0} already exists and was not written by `runner bundle`; choose an empty bundle directory")]
    NotEmpty(PathBuf),
    /// Filesystem failure.
    #[error("bundle {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// Unpacking a layer failed.
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    /// Reading a blob failed.
    #[error(transparent)]
    Store(#[from] image_store::Error),
    /// The user could not be resolved in the rootfs.
    #[error(transparent)]
    Spec(#[from] spec::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The file naming a bundle directory as written by `runner bundle` (it
/// holds the image reference): a second `bundle` into the same directory
/// replaces the rootfs and config.json next to it; without it, both are
/// someone else's and are never touched.
pub const MARKER: &str = ".strata-bundle";

/// Writes the bundle for `spec` from image `record` into `dir`, replacing
/// an earlier bundle written there (see [`MARKER`]).
pub fn write_bundle(
    store: &ImageStore,
    record: &ImageRecord,
    spec: &ContainerSpec,
    dir: &Path,
) -> Result<()> {
    let rootfs = dir.join("rootfs");
    let config_path = dir.join("config.json");
    let marker = dir.join(MARKER);
    let io_err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    if marker.is_file() {
        // Our own earlier output (complete or interrupted): replace it.
        if rootfs.exists() {
            fs::remove_dir_all(&rootfs).map_err(io_err("remove", &rootfs))?;
        }
        if config_path.exists() {
            fs::remove_file(&config_path).map_err(io_err("remove", &config_path))?;
        }
    }
    for p in [&rootfs, &config_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(Error::NotEmpty(p.clone()));
        }
    }
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    // Written first, so that an interrupted bundle is recognised as ours too.
    fs::write(&marker, format!("{}\n", record.reference)).map_err(io_err("write", &marker))?;
    // 0700: the image's set-uid-root files and device nodes land in it, and
    // the bundle may sit where every local user can walk (runc runs as root).
    // With --userns only the container's root may enter.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&rootfs)
        .map_err(io_err("create", &rootfs))?;
    if let Some(map) = spec.userns {
        std::os::unix::fs::chown(&rootfs, Some(map.host_start), Some(map.host_start))
            .map_err(io_err("chown", &rootfs))?;
    }
    let result = (|| {
        for (layer, diff_id) in record.layers.iter().zip(&record.diff_ids) {
            let blob = store.open_blob(&layer.digest)?;
            unpack::unpack_into(blob, &rootfs, diff_id, Whiteouts::Apply)?;
        }
        let user = spec::user::resolve_user(&spec.user, &rootfs)?;
        let config = runtime_config(spec, &user);
        let bytes = serde_json::to_vec_pretty(&config).expect("config serializes");
        fs::write(&config_path, bytes).map_err(io_err("write", &config_path))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&rootfs);
    }
    result
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": destination, "type": kind, "source": source, "options": options })
}

/// The OCI runtime config for a container spec.
pub fn runtime_config(spec: &ContainerSpec, user: &spec::user::ResolvedUser) -> Value {
    let caps: Vec<String> = spec.capabilities.iter().map(|c| c.to_string()).collect();
    let effective: Vec<String> = if user.uid == 0 {
        caps.clone()
    } else {
        Vec::new()
    };
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    for v in &spec.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": v.container, "type": "bind", "source": v.host,
            "options": ["rbind", mode],
        }));
    }
    for t in &spec.tmpfs {
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
        options.extend(t.flags.iter().chain(&t.data).cloned());
        mounts.push(json!({ "destination": t.path, "type": "tmpfs", "source": "tmpfs", "options": options }));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    if spec.network != Network::Host {
        namespaces.push(json!({"type": "network"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/sys/firmware", "/sys/devices/virtual/powercap"
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        "resources": resources(spec),
    });
    if let Some(map) = spec.userns {
        let m = json!([{ "containerID": 0, "hostID": map.host_start, "size": map.size }]);
        namespaces_push(&mut linux, json!({"type": "user"}));
        linux["uidMappings"] = m.clone();
        linux["gidMappings"] = m;
    }
    if let Some(profile) = &spec.seccomp {
        let arches: Vec<&str> = match std::env::consts::ARCH {
            "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            _ => Vec::new(),
        };
        let syscalls: Vec<Value> = profile
            .effective_rules(&spec.capabilities)
            .into_iter()
            .map(|r| {
                let mut v = json!({ "names": r.names, "action": r.action });
                if let Some(e) = r.errno_ret {
                    v["errnoRet"] = json!(e);
                }
                if !r.args.is_empty() {
                    v["args"] = json!(r.args.iter().map(|a| json!({"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op})).collect::<Vec<_>>());
                }
                v
            })
            .collect();
        linux["seccomp"] = json!({
            "defaultAction": profile.default_action,
            "defaultErrnoRet": profile.default_errno_ret.unwrap_or(1),
            "architectures": arches,
            "syscalls": syscalls,
        });
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            "user": { "uid": user.uid, "gid": user.gid, "additionalGids": user.groups },
            "args": spec.args,
            "env": env,
            "cwd": spec.cwd,
            "capabilities": {
                "bounding": caps, "effective": effective, "permitted": effective, "inheritable": [],
            },
            "noNewPrivileges": spec.no_new_privileges,
        },
        "root": { "path": "rootfs", "readonly": spec.read_only },
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

fn namespaces_push(linux: &mut Value, ns: Value) {
    if let Some(list) = linux["namespaces"].as_array_mut() {
        list.push(ns);
    }
}

fn resources(spec: &ContainerSpec) -> Value {
    let mut r = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(m) = spec.limits.memory {
        r["memory"] = json!({ "limit": m, "swap": m });
    }
    if let Some(c) = spec.limits.cpus {
        r["cpu"] = json!({ "quota": (c * 100_000.0).round() as i64, "period": 100_000 });
    }
    if let Some(p) = spec.limits.pids {
        r["pids"] = json!({ "limit": p });
    }
    r
}
