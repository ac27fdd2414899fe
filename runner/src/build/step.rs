//! A RUN step: the command in the runner's own sandbox, with the isolation
//! of `runner run` (namespaces, the default seccomp profile and
//! capabilities, `no_new_privs`, a cgroup, no network unless asked), on an
//! overlay of the stage's layers so far. The overlay's upper directory is
//! kept for the snapshot, in a scratch directory that is removed when the
//! returned [`StepDir`] is dropped, under the state root's `tmp/`; a RUN's
//! upper directory is on a tmpfs of the step's own when it can be
//! ([`StepDir::for_run`]). The layer tar always goes to disk.
//!
//! The process must be single-threaded (the image store closed): the
//! sandbox `clone`s. While the step runs, the runner's own stdout and
//! stderr point at a log file, so the step's output can be folded, shown
//! whole, or its last lines quoted when it fails.

use std::cell::RefCell;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::cgroup::{Cgroup, CgroupManager, Limits};
use crate::container::{self, RunOptions};
use crate::image::oci::ExecConfig;
use crate::paths::Root;
use crate::sandbox::{self, Launch, Outcome};
use crate::seccomp::{self, Profile};
use crate::spec::{Network, SecretFile, Tmpfs, Volume};

use super::Error;

/// A step's scratch directory (`upper/`, `work/`, `rootfs/`, `etc/`, `log`);
/// removed on drop. Its owner holds an exclusive lock on it, so a runner that
/// was killed mid-step leaves an unlocked directory, which the next runner
/// removes ([`remove_abandoned`]).
pub struct StepDir {
    dir: PathBuf,
    _lock: Flock<File>,
    /// `scratch/` is a tmpfs of its own ([`StepDir::for_run`]).
    memory: bool,
    /// Where the layer tar is written: on disk, beside the state root's store.
    layer: PathBuf,
    /// The finished step's mount namespace, held open so that tearing down
    /// its overlay (thousands of inodes after a big RUN) waits for this
    /// dir's drop instead of delaying the end of the step.
    mount_ns: RefCell<Option<File>>,
}

impl StepDir {
    /// The overlay upper directory.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The step's output.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// A file `name` in the scratch dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where a layer tar may be written before it moves into the store
    /// (always on disk, so moving it is a rename).
    pub fn layer_file(&self) -> PathBuf {
        self.layer.clone()
    }

    /// A fresh scratch dir on disk under the state root's `tmp/`.
    pub fn create(root: &Root) -> Result<StepDir, Error> {
        Self::create_in(root, false, false)
    }

    /// A RUN's scratch dir whose `upper/` and `work/` (links into
    /// `scratch/`) are on a tmpfs of the step's own, at most half the RAM,
    /// so the files a step writes, and the snapshot's reading of them, cost
    /// no disk allocation. On disk with `disk`, with
    /// `STRATA_BUILD_SCRATCH=disk`, in rootless mode, or when no tmpfs can
    /// be mounted. The tmpfs is detached on drop (and by
    /// [`remove_abandoned`] after a runner was killed).
    pub fn for_run(root: &Root, disk: bool) -> Result<StepDir, Error> {
        let memory = !disk
            && !std::env::var("STRATA_BUILD_SCRATCH").is_ok_and(|v| v == "disk")
            && !crate::rootless::active();
        Self::create_in(root, true, memory)
    }

    /// The scratch directory when it is a tmpfs of its own.
    pub fn memory_scratch(&self) -> Option<PathBuf> {
        self.memory.then(|| self.dir.join(SCRATCH))
    }

    /// Whether this dir's scratch is a tmpfs and full (a step that failed
    /// then is run again on disk).
    pub fn memory_full(&self) -> bool {
        self.memory
            && nix::sys::statvfs::statvfs(&self.dir.join(SCRATCH))
                .is_ok_and(|s| s.blocks_available() * s.fragment_size() < 1 << 20)
    }

    /// A fresh scratch dir under `tmp/`, with `upper/` and `work/` links into
    /// `scratch/` when `linked`, a tmpfs mounted there when `memory`. It is
    /// made under a hidden name and renamed once locked, so no sweeper sees
    /// it unlocked.
    fn create_in(root: &Root, linked: bool, memory: bool) -> Result<StepDir, Error> {
        let parent = root.tmp_dir();
        let name = format!("{STEP_PREFIX}{}", container::new_id());
        let layer = parent.join(format!("{name}{LAYER_SUFFIX}"));
        let hidden = parent.join(format!(".{name}"));
        let subs: &[&str] = if linked {
            &[SCRATCH, "rootfs", "etc"]
        } else {
            &["upper", "work", "rootfs", "etc"]
        };
        for sub in subs {
            let p = hidden.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("create", &p, e))?;
        }
        if linked {
            for sub in ["upper", "work"] {
                let p = hidden.join(sub);
                std::os::unix::fs::symlink(format!("{SCRATCH}/{sub}"), &p)
                    .map_err(|e| Error::io("link", &p, e))?;
            }
        }
        let lock = File::open(&hidden)
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e.into())
            })
            .map_err(|e| Error::io("lock", &hidden, e));
        let dir = parent.join(name);
        let renamed = lock.and_then(|lock| {
            fs::rename(&hidden, &dir).map_err(|e| Error::io("rename", &hidden, e))?;
            Ok(lock)
        });
        match renamed {
            Ok(lock) => {
                let memory = memory && mount_scratch(&dir.join(SCRATCH));
                if linked {
                    for sub in ["upper", "work"] {
                        let p = dir.join(SCRATCH).join(sub);
                        fs::create_dir(&p).map_err(|e| Error::io("create", &p, e))?;
                    }
                }
                Ok(StepDir {
                    dir,
                    _lock: lock,
                    memory,
                    layer,
                    mount_ns: RefCell::new(None),
                })
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&hidden);
                Err(e)
            }
        }
    }
}

const STEP_PREFIX: &str = "build-";
/// A step's layer tar on disk: `tmp/build-ID.layer.tar`.
const LAYER_SUFFIX: &str = ".layer.tar";
/// A RUN dir's subdirectory for `upper/` and `work/`: a tmpfs when it can.
const SCRATCH: &str = "scratch";

/// Mounts a tmpfs on `dir`, of `STRATA_BUILD_SCRATCH_SIZE` (tmpfs's
/// `size=`: bytes, `k`, `m`, `g` or a percentage of the RAM; default 50%)
/// at most; whether it could.
fn mount_scratch(dir: &Path) -> bool {
    use nix::mount::{mount, MsFlags};
    let size = std::env::var("STRATA_BUILD_SCRATCH_SIZE")
        .ok()
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '%'))
        .unwrap_or_else(|| "50%".into());
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=0700,size={size}").as_str()),
    )
    .is_ok()
}

/// Detaches the tmpfs on a step dir's scratch, if it has one.
fn unmount_scratch(dir: &Path) {
    let scratch = dir.join(SCRATCH);
    if is_tmpfs(&scratch) {
        let _ = nix::mount::umount2(&scratch, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Removes the `tmp/build-*` scratch dirs of build steps whose runner is gone
/// (killed mid-step: its locked directory was never dropped), and returns
/// how many. Steps in progress hold their lock and are kept. Hidden
/// `.build-*` dirs older than a minute are the leftovers of a runner killed
/// between creating and locking one. The step's cgroup goes with the
/// container cgroups' orphan sweep, its processes with the runner (they get
/// SIGKILL when it dies).
pub fn remove_abandoned(root: &Root) -> usize {
    let disk = root.tmp_dir();
    let removed = remove_abandoned_in(&disk);
    // Layer tars whose step dir is gone (a runner killed between the two).
    if let Ok(entries) = fs::read_dir(&disk) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(step) = name.strip_suffix(LAYER_SUFFIX) else {
                continue;
            };
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= Duration::from_secs(60));
            if old && !disk.join(step).exists() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    removed
}

/// [`remove_abandoned`] for the step dirs in `parent` (with their layer tars).
fn remove_abandoned_in(parent: &Path) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let abandoned = if name.starts_with(STEP_PREFIX) {
            File::open(&path)
                .ok()
                .and_then(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).ok())
                .is_some()
        } else if name.starts_with(&format!(".{STEP_PREFIX}")) {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= Duration::from_secs(60))
        } else {
            false
        };
        if abandoned {
            unmount_scratch(&path);
        }
        if abandoned && fs::remove_dir_all(&path).is_ok() {
            let _ = fs::remove_file(parent.join(format!("{name}{LAYER_SUFFIX}")));
            removed += 1;
        }
    }
    removed
}

impl StepDir {
    /// Drops the step dir, leaving the freeing of its tmpfs scratch and of
    /// its overlay to a short-lived process of its own
    /// ([`crate::sys::mount::detach_in_background`]), so the caller does not
    /// wait for the teardown of thousands of inodes. That process is forked:
    /// call this only while no other thread of ours holds a lock on a file
    /// (the store's uploads), or a copy of it would hold the lock too.
    pub fn drop_in_background(self) {
        let scratch = self.dir.join(SCRATCH);
        if self.memory && is_tmpfs(&scratch) {
            let mount_ns = self.mount_ns.take().map(OwnedFd::from);
            if let Ok(path) = CString::new(scratch.into_os_string().into_vec()) {
                let _ = crate::sys::mount::detach_in_background(&path, mount_ns);
            }
        }
        drop(self);
    }
}

impl Drop for StepDir {
    fn drop(&mut self) {
        drop(self.mount_ns.take());
        if self.memory {
            unmount_scratch(&self.dir);
        }
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.layer);
    }
}

/// What a RUN executes and how.
pub struct RunStep<'a> {
    /// argv (the shell form already wrapped in the SHELL).
    pub argv: Vec<String>,
    /// `KEY=value`: the image's Env, then the visible build args.
    pub env: Vec<String>,
    /// USER.
    pub user: Option<String>,
    /// WORKDIR.
    pub workdir: Option<String>,
    /// Network.
    pub network: Network,
    /// Unpacked layers, base first (at least one).
    pub layers: &'a [PathBuf],
    /// `RUN --mount` binds (context, stage, cache and secret mounts).
    pub volumes: Vec<Volume>,
    /// `RUN --mount=type=tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `RUN --mount=type=secret` files.
    pub secrets: Vec<SecretFile>,
}

/// Runs `step` with `dir` as its scratch dir; returns how it ended.
pub fn run(root: &Root, dir: &StepDir, step: &RunStep<'_>) -> Result<Outcome, Error> {
    let id = container::new_id();
    let options = RunOptions {
        name: None,
        env: Vec::new(),
        workdir: None,
        user: None,
        entrypoint: None,
        hostname: Some("buildkitsandbox".into()),
        memory: None,
        cpus: None,
        pids_limit: None,
        unsafe_no_device_cgroup: false,
        network: step.network,
        net: Default::default(),
        read_only: false,
        volumes: Vec::new(),
        tmpfs: Vec::new(),
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        security_opt: Vec::new(),
        preserve_fds: 0,
        tty: false,
        interactive: false,
        init: false,
        userns: None,
        stop_signal: None,
        stop_timeout: 10,
    };
    let exec = ExecConfig {
        user: step.user.clone(),
        env: Some(step.env.clone()),
        entrypoint: None,
        cmd: None,
        working_dir: step.workdir.clone(),
        stop_signal: None,
        healthcheck: None,
        exposed_ports: None,
    };
    let mut spec = container::build_spec(&options, &exec, &step.argv, id.clone())?;
    spec.volumes.extend(step.volumes.iter().cloned());
    spec.tmpfs.extend(step.tmpfs.iter().cloned());
    spec.secrets.extend(step.secrets.iter().cloned());
    let etc = dir.dir.join("etc");
    let hosts = match step.network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None | Network::Bridge => {
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                .to_owned()
        }
    };
    let files = [
        ("hostname", "buildkitsandbox\n".to_owned()),
        ("hosts", hosts),
        (
            "resolv.conf",
            fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
    ];
    for (name, text) in files {
        let p = etc.join(name);
        fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
    }
    let bpf = seccomp::cached_filter(root, &Profile::docker_default(), &spec.capabilities)
        .map_err(container::Error::from)?;
    let cgroup =
        Cgroup::for_container(Path::new("/sys/fs/cgroup"), &id).map_err(container::Error::from)?;
    cgroup
        .create(&Limits::default())
        .map_err(container::Error::from)?;
    let log_path = dir.log();
    let log = File::create(&log_path).map_err(|e| Error::io("create", &log_path, e))?;
    let outcome = {
        let _redirect = Redirect::to(&log)?;
        sandbox::block_forwarded_signals().map_err(container::Error::from)?;
        let hold_ns = |pid: i32| {
            *dir.mount_ns.borrow_mut() = File::open(format!("/proc/{pid}/ns/mnt")).ok();
        };
        let outcome = sandbox::run_with(
            &Launch {
                spec: &spec,
                layers: step.layers,
                state_dir: &dir.dir,
                seccomp_bpf: Some(&bpf),
                cgroup: &cgroup,
            },
            &sandbox::Hooks {
                started: Some(&hold_ns),
                ..Default::default()
            },
        );
        unblock_stop_signals();
        outcome
    };
    if let Err(e) = cgroup.destroy() {
        eprintln!("runner: warning: {e}");
    }
    Ok(outcome.map_err(container::Error::from)?)
}

/// Lets Ctrl-C and SIGTERM end the build again between steps (the sandbox
/// blocks them to forward them to the container).
fn unblock_stop_signals() {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
}

/// The runner's stdout and stderr pointed at a file until dropped.
struct Redirect {
    saved: [std::os::fd::RawFd; 2],
}

impl Redirect {
    fn to(file: &File) -> Result<Redirect, Error> {
        let dup =
            |fd| nix::unistd::dup(fd).map_err(|e| Error::io("dup", Path::new("stdout"), e.into()));
        let saved = [dup(1)?, dup(2)?];
        for fd in [1, 2] {
            nix::unistd::dup2(file.as_raw_fd(), fd)
                .map_err(|e| Error::io("dup2", Path::new("stdout"), e.into()))?;
        }
        Ok(Redirect { saved })
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        for (fd, saved) in [1, 2].into_iter().zip(self.saved) {
            let _ = nix::unistd::dup2(saved, fd);
            let _ = nix::unistd::close(saved);
        }
    }
}

/// How long a step took, as BuildKit prints it.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
