//! [`RunOptions`]: what the caller asks of a container beyond the image and
//! the command. The library's own type: the CLI converts its clap struct
//! into it (see `cli.rs`), so nothing here depends on clap. Values are as
//! the user wrote them; [`build_spec`](super::build_spec) parses and checks
//! them.

use crate::spec::Network;

/// Options for `run` and `bundle`, as given (Docker's flags and defaults).
/// Serializable: a detached container keeps them in its `config.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Name of the container.
    pub name: Option<String>,
    /// Environment variables: `KEY=value`, or `KEY` to copy the host's.
    pub env: Vec<String>,
    /// Working directory inside the container (default: the image's, or `/`).
    pub workdir: Option<String>,
    /// User: `name|uid[:group|gid]` (default: the image's).
    pub user: Option<String>,
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<String>,
    /// Container hostname (default: the first 12 digits of the id).
    pub hostname: Option<String>,
    /// Memory limit: bytes, or with a k/m/g suffix.
    pub memory: Option<String>,
    /// Number of CPUs.
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids_limit: Option<u64>,
    /// Run even if the device allow-list cannot be enforced.
    pub unsafe_no_device_cgroup: bool,
    /// Network mode.
    pub network: Network,
    /// With [`Network::Bridge`]: the network to join and the ports to publish.
    #[serde(default)]
    pub net: crate::network::Request,
    /// Mount the root filesystem read-only.
    pub read_only: bool,
    /// Bind mounts: `HOST:CONTAINER[:ro]`.
    pub volumes: Vec<String>,
    /// tmpfs mounts: `PATH[:options]`.
    pub tmpfs: Vec<String>,
    /// Capabilities to add (or `ALL`).
    pub cap_add: Vec<String>,
    /// Capabilities to drop (or `ALL`).
    pub cap_drop: Vec<String>,
    /// `seccomp=unconfined|PROFILE.json`, `no-new-privileges[=true|false]`,
    /// `landlock=on|off`.
    pub security_opt: Vec<String>,
    /// Descriptors 3 to 3+N-1 of the runner passed on to PID 1
    /// (`--preserve-fds N`, as runc and podman have); never to `exec`.
    #[serde(default)]
    pub preserve_fds: u32,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Keep stdin attached.
    pub interactive: bool,
    /// Run a reaper as PID 1.
    pub init: bool,
    /// Run in a user namespace whose root maps to this host uid/gid.
    pub userns: Option<u32>,
    /// Signal that stops the container (overrides the image's StopSignal).
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL.
    pub stop_timeout: u64,
}
