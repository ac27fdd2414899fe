//! A RUN step: the command in the runner's own sandbox, with the isolation
//! of `runner run` (namespaces, the default seccomp profile and
//! capabilities, `no_new_privs`, a cgroup, no network unless asked), on an
//! overlay of the stage's layers so far. The overlay's upper directory is
//! kept for the snapshot, in a scratch directory under the state root's
//! `tmp/` that is removed when the returned [`StepDir`] is dropped.
//!
//! The process must be single-threaded (the image store closed): the
//! sandbox `clone`s. While the step runs, the runner's own stdout and
//! stderr point at a log file, so the step's output can be folded, shown
//! whole, or its last lines quoted when it fails.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
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

    /// Where a layer tar may be written before it moves into the store.
    pub fn layer_file(&self) -> PathBuf {
        self.dir.join("layer.tar")
    }

    /// A fresh scratch dir under the state root. It is made under a hidden
    /// name and renamed once locked, so no sweeper sees it unlocked.
    pub fn create(root: &Root) -> Result<StepDir, Error> {
        let name = format!("{STEP_PREFIX}{}", container::new_id());
        let hidden = root.tmp_dir().join(format!(".{name}"));
        for sub in ["upper", "work", "rootfs", "etc"] {
            let p = hidden.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("create", &p, e))?;
        }
        let lock = File::open(&hidden)
            .and_then(|f| {
                Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e.into())
            })
            .map_err(|e| Error::io("lock", &hidden, e));
        let dir = root.tmp_dir().join(name);
        let renamed = lock.and_then(|lock| {
            fs::rename(&hidden, &dir).map_err(|e| Error::io("rename", &hidden, e))?;
            Ok(lock)
        });
        match renamed {
            Ok(lock) => Ok(StepDir { dir, _lock: lock }),
            Err(e) => {
                let _ = fs::remove_dir_all(&hidden);
                Err(e)
            }
        }
    }
}

const STEP_PREFIX: &str = "build-";

/// Removes the `tmp/build-*` scratch dirs of build steps whose runner is gone
/// (killed mid-step: its locked directory was never dropped), and returns
/// how many. Steps in progress hold their lock and are kept. Hidden
/// `.build-*` dirs older than a minute are the leftovers of a runner killed
/// between creating and locking one. The step's cgroup goes with the
/// container cgroups' orphan sweep, its processes with the runner (they get
/// SIGKILL when it dies).
pub fn remove_abandoned(root: &Root) -> usize {
    let Ok(entries) = fs::read_dir(root.tmp_dir()) else {
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
        if abandoned && fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

impl Drop for StepDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
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
        let outcome = sandbox::run(&Launch {
            spec: &spec,
            layers: step.layers,
            state_dir: &dir.dir,
            seccomp_bpf: Some(&bpf),
            cgroup: &cgroup,
        });
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
