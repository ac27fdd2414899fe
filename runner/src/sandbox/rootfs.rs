//! The container's root filesystem, built in the child's own mount
//! namespace before `pivot_root`: the overlay of the layers (see
//! [`super::overlay`]); volumes and
//! tmpfs; the state dir's `/etc` files; `/proc`, read-only `/sys`, a minimal
//! `/dev`; the container's own cgroups, read-only, at `/sys/fs/cgroup`;
//! Docker's masked and read-only paths.
//!
//! Every mount target is resolved inside the rootfs: paths an image or a
//! flag names go through [`secure_join`](crate::fsutil::secure_join), which treats the rootfs as `/` for
//! every symlink; the filesystems the runner provides (`/proc`, `/sys`,
//! `/dev`) are mounted on a real directory at exactly that path, an image's
//! symlink or file there being replaced ([`system_mount_point`]); everything
//! else is mounted inside those fresh filesystems, whose contents the image
//! does not control.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::child::{ChildError, Context};
use crate::fsutil::secure_join;
use crate::spec::ContainerSpec;

/// Bind-mounts `source` on `target`, with every mount below `source` when
/// `recursive`.
fn bind(source: &Path, target: &Path, recursive: bool) -> nix::Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
}

/// Remounts the bind mount at `target` read-only, with `extra` flags
/// (`MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`) as well.
pub(super) fn remount_ro(target: &Path, extra: MsFlags) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        None::<&str>,
    )
}

fn ensure_mount_point(target: &Path, dir: bool) -> Result<(), ChildError> {
    if dir {
        fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))
    } else {
        if let Some(p) = target.parent() {
            fs::create_dir_all(p).ctx(|| format!("create {}", p.display()))?;
        }
        if !target.exists() {
            fs::File::create(target).ctx(|| format!("create {}", target.display()))?;
        }
        Ok(())
    }
}

pub(super) fn mount_volumes(spec: &ContainerSpec, rootfs: &Path) -> Result<(), ChildError> {
    for v in &spec.volumes {
        let target = secure_join(rootfs, &v.container)
            .ctx(|| format!("resolve {}", v.container.display()))?;
        // A listed source is bound through a descriptor of this mount
        // namespace checked to be what was listed.
        let checked = match v.listed {
            Some(id) => Some(
                crate::fsutil::open_same(&v.host, id, true)
                    .ctx(|| format!("volume source {}", v.host.display()))?,
            ),
            None => None,
        };
        let source = match &checked {
            Some(f) => PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())),
            None => v.host.clone(),
        };
        let is_dir = fs::metadata(&source)
            .ctx(|| format!("volume source {}", v.host.display()))?
            .is_dir();
        ensure_mount_point(&target, is_dir)?;
        bind(&source, &target, true)
            .ctx(|| format!("bind {} to {}", v.host.display(), v.container.display()))?;
        if v.read_only {
            remount_ro(&target, MsFlags::empty())
                .ctx(|| format!("remount {} read-only", v.container.display()))?;
        }
    }
    for t in &spec.tmpfs {
        let target =
            secure_join(rootfs, &t.path).ctx(|| format!("resolve {}", t.path.display()))?;
        ensure_mount_point(&target, true)?;
        let data = t.data.join(",");
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::from_bits_truncate(t.mount_flags()),
            Some(data.as_str()),
        )
        .ctx(|| format!("mount tmpfs on {}", t.path.display()))?;
    }
    Ok(())
}

/// Writes the spec's secret files on a tmpfs mounted at `<state>/secrets`
/// in this (private) mount namespace only, binds each read-only at its
/// path, and detaches the tmpfs: the host never sees it and it goes with
/// the container's mounts.
pub(super) fn mount_secrets(
    spec: &ContainerSpec,
    state_dir: &Path,
    rootfs: &Path,
) -> Result<(), ChildError> {
    use std::os::unix::fs::PermissionsExt;
    if spec.secrets.is_empty() {
        return Ok(());
    }
    let stage = state_dir.join("secrets");
    fs::create_dir_all(&stage).ctx(|| format!("create {}", stage.display()))?;
    mount(
        Some("tmpfs"),
        &stage,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .ctx(|| "mount the secrets' tmpfs".into())?;
    for (n, s) in spec.secrets.iter().enumerate() {
        let file = stage.join(n.to_string());
        let what = || format!("secret file for {}", s.path.display());
        fs::write(&file, &s.bytes).ctx(what)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(s.mode)).ctx(what)?;
        std::os::unix::fs::chown(&file, Some(s.uid), Some(s.gid)).ctx(what)?;
        let target =
            secure_join(rootfs, &s.path).ctx(|| format!("resolve {}", s.path.display()))?;
        ensure_mount_point(&target, false)?;
        bind(&file, &target, false).ctx(|| format!("bind the secret to {}", s.path.display()))?;
        remount_ro(
            &target,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )
        .ctx(|| format!("remount {} read-only", s.path.display()))?;
    }
    nix::mount::umount2(&stage, nix::mount::MntFlags::MNT_DETACH)
        .ctx(|| "detach the secrets' tmpfs".into())?;
    Ok(())
}

/// Binds `<state>/etc/*` (hostname, hosts, resolv.conf) over the image's
/// `/etc`, creating `/etc` (0755, in the container's upper layer) when the
/// image has none, as Docker does. An `/etc` that is not a directory is left
/// alone.
pub(super) fn mount_etc_files(state_dir: &Path, rootfs: &Path) -> Result<(), ChildError> {
    let etc = secure_join(rootfs, Path::new("/etc")).ctx(|| "resolve /etc".into())?;
    if fs::symlink_metadata(&etc).is_err() {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&etc)
            .ctx(|| "create /etc".into())?;
    }
    if !etc.is_dir() {
        return Ok(());
    }
    let Ok(entries) = fs::read_dir(state_dir.join("etc")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let target = secure_join(rootfs, &Path::new("/etc").join(&name))
            .ctx(|| format!("resolve /etc/{}", name.to_string_lossy()))?;
        ensure_mount_point(&target, false)?;
        bind(&entry.path(), &target, false)
            .ctx(|| format!("bind /etc/{}", name.to_string_lossy()))?;
    }
    Ok(())
}

const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub(super) fn mount_system(
    spec: &ContainerSpec,
    rootfs: &Path,
    console: Option<&Path>,
) -> Result<(), ChildError> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = system_mount_point(rootfs, "proc")?;
    mount(Some("proc"), &proc_dir, Some("proc"), nodev, None::<&str>)
        .ctx(|| "mount /proc".into())?;
    let sys_dir = system_mount_point(rootfs, "sys")?;
    if mount(
        Some("sysfs"),
        &sys_dir,
        Some("sysfs"),
        nodev | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .is_err()
    {
        // Host network inside a user namespace: sysfs cannot be mounted fresh.
        bind(Path::new("/sys"), &sys_dir, true).ctx(|| "bind /sys".into())?;
        remount_ro(&sys_dir, nodev).ctx(|| "remount /sys read-only".into())?;
    }
    let dev = system_mount_point(rootfs, "dev")?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .ctx(|| "mount /dev".into())?;
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let made = nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        );
        if made.is_ok() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
                .ctx(|| format!("chmod /dev/{name}"))?;
        } else {
            ensure_mount_point(&path, false)?;
            bind(&Path::new("/dev").join(name), &path, false)
                .ctx(|| format!("bind /dev/{name}"))?;
        }
    }
    let pts = dev.join("pts");
    ensure_mount_point(&pts, true)?;
    let pts_opts = if spec.userns.is_some() {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts_opts),
    )
    .ctx(|| "mount /dev/pts".into())?;
    let shm = dev.join("shm");
    ensure_mount_point(&shm, true)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        nodev,
        Some("mode=1777,size=65536k"),
    )
    .ctx(|| "mount /dev/shm".into())?;
    let mqueue = dev.join("mqueue");
    ensure_mount_point(&mqueue, true)?;
    mount(Some("mqueue"), &mqueue, Some("mqueue"), nodev, None::<&str>)
        .ctx(|| "mount /dev/mqueue".into())?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .ctx(|| format!("symlink /dev/{link}"))?;
    }
    if let Some(console) = console {
        let target = dev.join("console");
        ensure_mount_point(&target, false)?;
        bind(console, &target, false).ctx(|| "bind /dev/console".into())?;
    }
    for path in MASKED {
        let target = rootfs.join(&path[1..]);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| format!("mask {path}"))?,
            Ok(_) => bind(&dev.join("null"), &target, false).ctx(|| format!("mask {path}"))?,
            Err(_) => {}
        }
    }
    for path in READ_ONLY {
        let target = rootfs.join(&path[1..]);
        if target.exists() {
            bind(&target, &target, true).ctx(|| format!("bind {path}"))?;
            remount_ro(&target, nodev).ctx(|| format!("remount {path} read-only"))?;
        }
    }
    Ok(())
}

pub(super) fn pivot_into(rootfs: &Path) -> Result<(), ChildError> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// The mount point of a filesystem the runner provides at `/<name>` (proc,
/// sys, dev): a real directory at exactly that path. An image's symlink
/// (which would send the mount elsewhere, even out of the rootfs) or file
/// there is replaced by a directory; only the container's upper dir
/// changes, never the image's layers.
fn system_mount_point(rootfs: &Path, name: &str) -> Result<PathBuf, ChildError> {
    let path = rootfs.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Ok(path),
        Ok(_) => fs::remove_file(&path).ctx(|| format!("replace the image's /{name}"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ChildError(125, format!("stat /{name}: {e}"))),
    }
    fs::create_dir(&path).ctx(|| format!("create /{name}"))?;
    Ok(path)
}

/// The hierarchies of `/proc/self/cgroup` (as their controller lists:
/// `memory`, `cpu,cpuacct`, `name=systemd`, or empty for cgroup2) in which
/// this process's cgroup is not the runner's, i.e. the container's own.
/// Read before the cgroup namespace is taken, when paths are still absolute.
pub(super) fn own_cgroups(runner: &str) -> Vec<String> {
    let parse = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let _id = f.next()?;
                Some((f.next()?.to_owned(), f.next()?.to_owned()))
            })
            .collect()
    };
    let runner = parse(runner);
    let mine = parse(&fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    mine.into_iter()
        .filter(|(controllers, path)| !runner.iter().any(|(c, p)| c == controllers && p == path))
        .map(|(controllers, _)| controllers)
        .collect()
}

/// A cgroup filesystem the host mounts under `/sys/fs/cgroup`.
struct HostCgroupMount {
    /// Mount point relative to `/sys/fs/cgroup` (empty: cgroup2 is `/sys/fs/cgroup` itself).
    name: String,
    /// `cgroup` or `cgroup2`.
    fstype: String,
    /// Its super options (`rw,memory`).
    options: Vec<String>,
}

fn host_cgroup_mounts() -> Vec<HostCgroupMount> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let options = right.nth(1)?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let name = if mount_point == "/sys/fs/cgroup" {
                ""
            } else {
                mount_point.strip_prefix("/sys/fs/cgroup/")?
            };
            if name.contains('/') || name.contains('\\') {
                return None;
            }
            Some(HostCgroupMount {
                name: name.to_owned(),
                fstype: fstype.to_owned(),
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Mounts the container's own cgroups read-only at `/sys/fs/cgroup`, as
/// Docker does. Runs in the container's cgroup namespace, so each fresh
/// cgroup mount shows the container's cgroup as its root and nothing above
/// or beside it. With cgroup2 at `/sys/fs/cgroup` that is one mount; with v1
/// (or hybrid) a read-only tmpfs holds one mount per hierarchy the container
/// has its own cgroup in (`own`, see [`own_cgroups`]), named as on the host,
/// plus the host's symlinks to them (`cpu -> cpu,cpuacct`). Hierarchies where
/// the container shares the runner's cgroup are left out: they would show
/// the runner's cgroup and everything under it.
pub(super) fn mount_cgroups(rootfs: &Path, own: &[String]) -> Result<(), ChildError> {
    let target = rootfs.join("sys/fs/cgroup");
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let host = host_cgroup_mounts();
    let owns = |m: &HostCgroupMount| -> Option<String> {
        if m.fstype == "cgroup2" {
            return own.iter().any(String::is_empty).then(String::new);
        }
        own.iter()
            .filter(|c| !c.is_empty())
            .find(|c| c.split(',').all(|one| m.options.iter().any(|o| o == one)))
            .cloned()
    };
    if let Some(unified) = host.iter().find(|m| m.name.is_empty()) {
        if owns(unified).is_some() && target.is_dir() {
            mount(Some("cgroup2"), &target, Some("cgroup2"), ro, None::<&str>)
                .ctx(|| "mount /sys/fs/cgroup".into())?;
        }
        return Ok(());
    }
    if !target.is_dir() {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .ctx(|| "mount tmpfs on /sys/fs/cgroup".into())?;
    let mut mounted = Vec::new();
    for m in &host {
        let Some(controllers) = owns(m) else { continue };
        let dir = target.join(&m.name);
        fs::create_dir(&dir).ctx(|| format!("create /sys/fs/cgroup/{}", m.name))?;
        let data = (!controllers.is_empty()).then_some(controllers.as_str());
        mount(
            Some(m.fstype.as_str()),
            &dir,
            Some(m.fstype.as_str()),
            ro,
            data,
        )
        .ctx(|| format!("mount /sys/fs/cgroup/{}", m.name))?;
        mounted.push(m.name.clone());
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            let Ok(link) = fs::read_link(entry.path()) else {
                continue;
            };
            if link.components().count() == 1 && mounted.iter().any(|m| Path::new(m) == link) {
                std::os::unix::fs::symlink(&link, target.join(entry.file_name())).ctx(|| {
                    format!(
                        "symlink /sys/fs/cgroup/{}",
                        entry.file_name().to_string_lossy()
                    )
                })?;
            }
        }
    }
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_REMOUNT | ro,
        Some("mode=755"),
    )
    .ctx(|| "remount /sys/fs/cgroup read-only".into())
}
