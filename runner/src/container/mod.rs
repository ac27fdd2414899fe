//! Running a container end to end, in two phases.
//!
//! 1. [`prepare`], with the image store open: make sure the image is local
//!    (pulling it if not), build the container spec from its config, and
//!    unpack its layers (streamed from the store).
//! 2. [`run`], once the caller has closed the store (the sandbox `clone`s,
//!    which needs a single-threaded process): compile the seccomp filter;
//!    record the container's state; create its cgroup; hand over to the
//!    sandbox; report the outcome (including OOM kills); clean up on every
//!    path. `run` gets no store, so it cannot reopen one by mistake.
//!
//! Submodules: [`state`] (each container's record on disk, and cleanup
//! after a runner or monitor that died), [`records`] (locks, lookups by id,
//! prefix or name), [`bundle`] (`runner bundle`: the same container written
//! out as an OCI runtime bundle), and the containers that live on:
//! [`detached`] (`run -d`: the config, starting the monitor), [`monitor`]
//! (the per-container process that owns PID 1), [`logs`], [`health`],
//! [`control`] (stop, kill, wait, start, restart, rm, prune), [`exec`],
//! [`view`] (`ps`, `inspect`) and [`clock`] (times as they are shown).

pub mod bundle;
pub mod clock;
pub mod control;
pub mod detached;
pub mod exec;
pub mod health;
pub mod logs;
pub mod monitor;
mod options;
pub mod records;
pub mod state;
pub mod view;

pub use options::RunOptions;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::{Cgroup, CgroupManager, Limits};
use crate::image::oci::ExecConfig;
use crate::image::pull::{self, PullOptions};
use crate::image::reference::Reference;
use crate::image::store as image_store;
use crate::image::store::{ImageRecord, ImageStore};
use crate::image::{layers, unpack};
use crate::lsm;
use crate::paths::Root;
use crate::sandbox::{self, Launch};
use crate::seccomp::{self, Profile};
use crate::spec::{self, ContainerSpec, IdMap, Tmpfs, Volume};
use crate::{caps, cgroup};
use state::{ContainerState, State};

/// Errors running a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Pulling failed.
    #[error(transparent)]
    Pull(#[from] pull::Error),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] image_store::Error),
    /// Unpacking failed.
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    /// An option is invalid.
    #[error(transparent)]
    Spec(#[from] spec::Error),
    /// A capability name is invalid.
    #[error(transparent)]
    Caps(#[from] caps::Error),
    /// seccomp failed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
    /// cgroup setup failed.
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
    /// Container state failed.
    #[error(transparent)]
    State(#[from] state::Error),
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
    /// Networking (`--network bridge`, `-p`) failed.
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    /// A `--security-opt` is unknown.
    #[error("unknown --security-opt {0:?}")]
    SecurityOpt(String),
    /// The host's AppArmor cannot load the default profile.
    #[error("{0}")]
    AppArmor(std::io::Error),
    /// A `--restart` value is malformed.
    #[error("invalid restart policy {0:?}: use no, on-failure[:N], always or unless-stopped")]
    Restart(String),
    /// A duration flag is malformed.
    #[error("invalid {0} {1:?}: use a duration like 500ms, 30s, 1m or 1h")]
    Duration(String, String),
    /// A `--log-opt` is unknown or malformed.
    #[error("invalid --log-opt {0:?}: use max-size=SIZE or max-file=N")]
    LogOpt(String),
    /// A `--memory` value is malformed.
    #[error("invalid memory size {0:?}")]
    Memory(String),
    /// An option rootless mode does not offer.
    #[error("{0} is not available in rootless mode{1}")]
    Rootless(&'static str, &'static str),
    /// The Ctrl-C handler for the pull could not be installed.
    #[error("installing the Ctrl-C handler: {0}")]
    Signals(std::io::Error),
    /// Preparing a file or directory in the container's state dir failed.
    #[error("preparing {path}: {source}")]
    Prepare {
        /// The dir.
        path: std::path::PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How `runner run` ended.
#[derive(Debug)]
pub struct RunResult {
    /// Exit status for `runner` itself.
    pub code: i32,
    /// The memory cgroup OOM-killed something.
    pub oom_killed: bool,
    /// The command never started: why.
    pub setup_error: Option<String>,
}

/// Returns the local image, pulling it if it is not local.
pub fn ensure_image(
    root: &Root,
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
) -> Result<ImageRecord> {
    match store.get_image(reference)? {
        Some(r) => Ok(r),
        None => Ok(pull::pull(root, store, reference, options)?),
    }
}

/// A container ready to start: its image, spec and unpacked layers.
/// Built by [`prepare`] while the store is open; [`run`] needs no store.
#[derive(Debug)]
pub struct Prepared {
    /// The image.
    pub image: ImageRecord,
    /// What to run.
    pub spec: ContainerSpec,
    /// Unpacked layer directories, base first.
    pub layers: Vec<PathBuf>,
    /// The options it was prepared with.
    pub options: RunOptions,
    /// The command given on the command line.
    pub command: Vec<String>,
}

/// Everything `runner run` needs from the image store: the image (pulled if
/// missing), the spec built from its config and `options`, and its layers
/// unpacked (independent layers in parallel, on threads joined before this
/// returns).
pub fn prepare(
    root: &Root,
    store: &ImageStore,
    reference: &Reference,
    pull: &PullOptions,
    options: &RunOptions,
    command: &[String],
) -> Result<Prepared> {
    // Ctrl-C while pulling and unpacking says so (the default comes back before the sandbox).
    let _interrupt = crate::sys::proc::ExitOnInterrupt::install().map_err(Error::Signals)?;
    let image = ensure_image(root, store, reference, pull)?;
    let exec = image.image_config.config.clone().unwrap_or_default();
    let spec = build_spec(options, &exec, command, new_id())?;
    let layers = layers::ensure_layers(root, store, &image.layer_pairs())?;
    Ok(Prepared {
        image,
        spec,
        layers,
        options: options.clone(),
        command: command.to_vec(),
    })
}

/// [`prepare`] without opening the store, for an image in the image cache
/// (one `run` read before, see [`image_store::cache`]) whose layers are
/// all unpacked; `None` otherwise (then [`prepare`] does the work).
pub fn prepare_cached(
    root: &Root,
    reference: &Reference,
    options: &RunOptions,
    command: &[String],
) -> Result<Option<Prepared>> {
    let Some(image) = image_store::cache::lookup(root, &reference.to_string()) else {
        return Ok(None);
    };
    let exec = image.image_config.config.clone().unwrap_or_default();
    let spec = build_spec(options, &exec, command, new_id())?;
    let layers = image.diff_ids.iter().map(|d| root.layer(d)).collect();
    Ok(Some(Prepared {
        image,
        spec,
        layers,
        options: options.clone(),
        command: command.to_vec(),
    }))
}

/// Parses `32m`, `1g`, `512k` or plain bytes.
pub fn parse_memory(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Memory(text.to_owned()))
}

/// A fresh random container id (64 hex digits, as Docker's).
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    let n = crate::sys::proc::getrandom(&mut bytes);
    assert_eq!(n, 32, "getrandom failed");
    hex::encode(bytes)
}

/// Builds the container spec from the image config and the options.
pub fn build_spec(
    options: &RunOptions,
    image: &ExecConfig,
    command: &[String],
    id: String,
) -> Result<ContainerSpec> {
    if crate::rootless::active() {
        if options.userns.is_some() {
            return Err(Error::Rootless(
                "--userns",
                ": every rootless container runs in the user's namespace \
                 (container root is your own uid)",
            ));
        }
        if options.network == spec::Network::Bridge {
            crate::network::slirp::Options::parse(options.net.network_name())?;
        }
    }
    let args = spec::command(image, options.entrypoint.as_deref(), command)?;
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_owned());
    let env = spec::environment(image, &hostname, options.tty, &options.env);
    let capabilities = caps::resolve(&options.cap_add, &options.cap_drop)?;
    let mut seccomp = Some(Profile::docker_default());
    let mut no_new_privileges = true;
    let mut landlock = true;
    let mut lsm_opts = Vec::new();
    for opt in &options.security_opt {
        let (key, value) = opt
            .split_once(['=', ':'])
            .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            (key, Some(value)) if lsm::owns(key) => lsm_opts.push((key, value)),
            ("seccomp", Some("unconfined")) => seccomp = None,
            ("seccomp", Some(path)) => seccomp = Some(Profile::load(Path::new(path))?),
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            ("landlock", Some("on" | "true")) => landlock = true,
            ("landlock", Some("off" | "false")) => landlock = false,
            _ => return Err(Error::SecurityOpt(opt.clone())),
        }
    }
    // The MCS categories come from the (random) id, so `exec` gets the same.
    let random = u64::from_str_radix(id.get(..16).unwrap_or_default(), 16).unwrap_or_default();
    let confinement =
        lsm::confinement(&lsm_opts, lsm::Host::detect(), random).map_err(Error::SecurityOpt)?;
    if confinement.apparmor.as_deref() == Some(lsm::DEFAULT_PROFILE) {
        lsm::ensure_default_profile().map_err(Error::AppArmor)?;
    }
    if options.network == spec::Network::Bridge {
        options.net.port_specs()?;
    } else if let Some(p) = options.net.publish.first() {
        return Err(crate::network::Error::Port(
            p.clone(),
            "publishing a port needs --network bridge or a user network".into(),
        )
        .into());
    }
    let stop_signal = match options
        .stop_signal
        .as_deref()
        .or(image.stop_signal.as_deref())
    {
        Some(s) => spec::parse_signal(s)?,
        None => nix::sys::signal::Signal::SIGTERM,
    };
    Ok(ContainerSpec {
        id,
        name: options
            .name
            .as_deref()
            .map(str::parse::<spec::ContainerName>)
            .transpose()?,
        hostname,
        args,
        env,
        cwd: options
            .workdir
            .clone()
            .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".to_owned()),
        user: options
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
        capabilities,
        no_new_privileges,
        seccomp,
        landlock,
        confinement,
        preserve_fds: options.preserve_fds,
        read_only: options.read_only,
        volumes: options
            .volumes
            .iter()
            .map(|v| v.parse::<Volume>())
            .collect::<Result<_, _>>()?,
        tmpfs: options
            .tmpfs
            .iter()
            .map(|t| t.parse::<Tmpfs>())
            .collect::<Result<_, _>>()?,
        secrets: Vec::new(),
        network: options.network,
        userns: options.userns.map(|host_start| IdMap {
            host_start,
            size: 65536,
        }),
        tty: options.tty,
        stdin: options.interactive,
        init: options.init,
        limits: Limits {
            memory: options.memory.as_deref().map(parse_memory).transpose()?,
            cpus: options.cpus,
            pids: options.pids_limit,
            unenforced_devices: options.unsafe_no_device_cgroup,
        },
        stop_signal,
        stop_timeout: Duration::from_secs(options.stop_timeout),
    })
}

/// The files the sandbox bind-mounts over the image's `/etc`, as Docker does.
const ETC_FILES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];

/// Writes `<state>/etc/{hostname,hosts,resolv.conf}`: the container's
/// hostname, a hosts file naming it, and the host's resolver configuration.
fn write_etc_files(dir: &Path, spec: &ContainerSpec) -> Result<()> {
    let etc = dir.join("etc");
    let hosts = match spec.network {
        spec::Network::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        spec::Network::None | spec::Network::Bridge => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{}\n",
            spec.hostname
        ),
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let contents = [format!("{}\n", spec.hostname), hosts, resolv];
    for (name, text) in ETC_FILES.iter().zip(contents) {
        let path = etc.join(name);
        crate::fsutil::write_replace(&path, text.as_bytes(), false)
            .map_err(|source| Error::Prepare { path, source })?;
    }
    Ok(())
}

/// Prepares a container's state directory for a run: the `/etc` files, and
/// with `--userns` the owners and id-mapped layer mount points.
pub(crate) fn prepare_state_dir(dir: &Path, spec: &ContainerSpec, layers: usize) -> Result<()> {
    write_etc_files(dir, spec)?;
    if let Some(map) = spec.userns {
        chown(dir, Some(map.host_start), Some(map.host_start)).map_err(|source| {
            Error::Prepare {
                path: dir.to_owned(),
                source,
            }
        })?;
        for sub in ["upper", "work", "rootfs"] {
            let path = dir.join(sub);
            chown(&path, Some(map.host_start), Some(map.host_start))
                .map_err(|source| Error::Prepare { path, source })?;
        }
        for name in ETC_FILES {
            let path = dir.join("etc").join(name);
            chown(&path, Some(map.host_start), Some(map.host_start))
                .map_err(|source| Error::Prepare { path, source })?;
        }
        // Mount points for the id-mapped layers the sandbox attaches.
        for i in 0..layers {
            let path = dir.join("lower").join(i.to_string());
            std::fs::create_dir_all(&path).map_err(|source| Error::Prepare { path, source })?;
        }
    }
    Ok(())
}

/// With `--network bridge`: joins the container to its network (see
/// [`crate::network::attach`]), or in rootless mode plans its slirp4netns
/// (see [`crate::network::slirp`]); `<state>/etc` must be written already.
pub(crate) fn join_network(
    root: &Root,
    spec: &ContainerSpec,
    net: &crate::network::Request,
    exec: Option<&ExecConfig>,
) -> Result<Option<crate::network::Connection>> {
    if spec.network != spec::Network::Bridge {
        return Ok(None);
    }
    let name = spec.name.as_ref().map(ToString::to_string);
    let exposed = exec
        .and_then(|e| e.exposed_ports.as_ref())
        .map(|p| p.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if crate::rootless::active() {
        let plan = crate::network::slirp::plan(&root.container(&spec.id), net, exposed)?;
        return Ok(Some(crate::network::Connection::Slirp(
            plan,
            Default::default(),
        )));
    }
    let member = crate::network::Member {
        id: &spec.id,
        name: name.as_deref(),
        hostname: &spec.hostname,
    };
    let attachment = crate::network::attach(root, net, &member, exposed)?;
    Ok(Some(crate::network::Connection::Bridge(attachment)))
}

/// The sandbox's network hook: connects the child's namespace.
pub(crate) fn plumb(
    connection: Option<&crate::network::Connection>,
    pid: i32,
    netns: std::os::fd::BorrowedFd<'_>,
) -> Result<(), String> {
    connection.map_or(Ok(()), |c| c.plumb(pid, netns).map_err(|e| e.to_string()))
}

/// Runs a prepared container and waits for it to end. The image store must
/// be closed by now: the sandbox refuses to start from a multi-threaded process.
pub fn run(root: &Root, prepared: &Prepared) -> Result<RunResult> {
    let Prepared {
        image: record,
        spec,
        layers,
        options,
        ..
    } = prepared;
    let net = &options.net;
    let bpf = match &spec.seccomp {
        Some(profile) => Some(seccomp::cached_filter(root, profile, &spec.capabilities)?),
        None => None,
    };
    let cgroup = Cgroup::for_container(Path::new("/sys/fs/cgroup"), &spec.id)?;
    sandbox::block_forwarded_signals()?;
    let container = ContainerState::create(
        root,
        State {
            id: spec.id.clone(),
            name: spec.name.as_ref().map(ToString::to_string),
            image: record.reference.clone(),
            owner_pid: std::process::id() as i32,
            owner_start: state::process_start_time(std::process::id() as i32).unwrap_or(0),
            owner_boot: state::boot_id(),
            cgroup: cgroup.clone(),
            layers: record.diff_ids.clone(),
            detached: false,
            life: state::Life {
                created: state::now_ms(),
                started_at: state::now_ms(),
                command: spec.args.clone(),
                ..state::Life::default()
            },
        },
    )?;
    // What `exec` needs to join it, as for a detached container.
    let mut config = detached::config_of(
        prepared,
        &prepared.options,
        &prepared.command,
        &detached::DetachOptions::default(),
        &spec
            .name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    config.options.name = spec.name.as_ref().map(ToString::to_string);
    detached::write_config(root, &config)?;
    cgroup.create(&spec.limits)?;
    prepare_state_dir(container.dir(), spec, layers.len())?;
    let exec = record.image_config.config.as_ref();
    let connection = join_network(root, spec, net, exec)?;
    let connect =
        |pid: i32, netns: std::os::fd::BorrowedFd<'_>| plumb(connection.as_ref(), pid, netns);
    let record_pid = |pid: i32| {
        let _ = records::update(root, &spec.id, |s| s.life.pid = pid);
    };
    let outcome = sandbox::run_with(
        &Launch {
            spec,
            layers,
            state_dir: container.dir(),
            seccomp_bpf: bpf.as_deref(),
            cgroup: &cgroup,
        },
        &sandbox::Hooks {
            output: None,
            started: Some(&record_pid),
            network: Some(&connect),
        },
    )?;
    let oom_killed = cgroup.oom_killed();
    drop(connection);
    drop(container);
    Ok(RunResult {
        code: outcome.code,
        oom_killed,
        setup_error: outcome.setup_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("32m").unwrap(), 32 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("0").is_err());
    }
}
