//! Command-line definitions: clap structs, and their conversion into the
//! library's own types ([`RunOptions`]); the work happens elsewhere.
//! Flags follow Docker's so people's habits carry over.

pub mod build;
pub mod containers;
pub mod network;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::container::RunOptions;
use crate::image::client::Settings;
use crate::spec::Network;

/// Pull OCI images, unpack each layer once, and run them isolated.
#[derive(Debug, Parser)]
#[command(name = "runner", version = crate::VERSION)]
pub struct Cli {
    /// Where the runner keeps images, layers and container state.
    #[arg(long, global = true, env = "STRATA_RUNNER_ROOT", default_value = crate::paths::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Registry host (HOST[:PORT]) to reach over plain HTTP. Loopback hosts always are.
    #[arg(long = "insecure-registry", global = true)]
    pub insecure_registries: Vec<String>,
    /// Directory of `HOST[:PORT]/ca.crt` files trusted for registries' TLS,
    /// instead of /etc/strata/certs.d and /etc/docker/certs.d.
    #[arg(long, global = true, env = "STRATA_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download an image into the local store.
    Pull(PullArgs),
    /// List local images.
    Images,
    /// Remove local images.
    Rmi {
        /// Images to remove.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove unpacked layers and blobs no image or running container uses.
    Prune,
    /// Store credentials for a registry.
    Login(LoginArgs),
    /// Run a command in a new container.
    Run(RunArgs),
    /// Write an OCI runtime bundle (config.json + rootfs) for an image.
    Bundle(BundleArgs),
    /// Show the state root, kernel features and registries logged in to.
    Info,
    /// Build an image from a Dockerfile.
    Build(crate::cli::build::BuildArgs),
    /// Push a local image to its registry.
    Push {
        /// Image reference.
        image: String,
    },
    /// Name a local image also DST.
    Tag {
        /// The local image.
        src: String,
        /// The new name.
        dst: String,
    },
    /// Show an image's history: its layers with their instruction and size.
    History {
        /// Image reference.
        image: String,
    },
    /// Manage the build cache.
    Builder {
        /// What to do.
        #[command(subcommand)]
        command: crate::cli::build::BuilderCommand,
    },
    /// List containers.
    Ps(containers::PsArgs),
    /// Show a container's output.
    Logs(containers::LogsArgs),
    /// Stop containers: the stop signal, then SIGKILL after a timeout.
    Stop(containers::StopArgs),
    /// Send a signal to containers (default SIGKILL).
    Kill(containers::KillArgs),
    /// Wait for containers to end and print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers.
    Start {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop, then start containers.
    Restart(containers::StopArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// Show containers or images as JSON.
    Inspect {
        /// Containers or images.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(containers::ExecArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(containers::ContainerCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// List a container's published ports.
    Port(network::PortArgs),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(name = "__assets", hide = true)]
    Assets {
        /// Output directory.
        dir: PathBuf,
    },
    /// The monitor of a detached container (started by `run -d` and `start`).
    #[command(name = "__monitor", hide = true)]
    Monitor {
        /// Container id.
        id: String,
    },
}

/// `runner pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference.
    pub image: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
}

/// `runner login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host.
    pub server: String,
    /// User name.
    #[arg(short, long)]
    pub username: String,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Options shared by `run` and `bundle`.
#[derive(Debug, Args, Clone)]
pub struct ContainerArgs {
    /// Remove the container when it exits (always the case; accepted for Docker habits).
    #[arg(long)]
    pub rm: bool,
    /// Name of the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=value, or KEY to copy the host's).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// Run even if the device allow-list cannot be enforced (no cgroup v1 `devices` hierarchy, or the v2 eBPF program cannot be attached). Unsafe: the container may open any device node it creates.
    #[arg(long)]
    pub unsafe_no_device_cgroup: bool,
    /// Network: none (the default: only lo), host, bridge (the default
    /// bridge, strata0), or a network made with `runner network create`.
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Publish a container port: [IP:][HOSTPORT:]CTRPORT[/tcp|/udp] (implies --network bridge).
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish every EXPOSEd port on a free host port (implies --network bridge).
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Mount a tmpfs: PATH[:options].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Add a capability (or ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false], landlock=on|off.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run a reaper as PID 1 that forwards signals and reaps orphans.
    #[arg(long)]
    pub init: bool,
    /// Run in a user namespace: container root maps to host uid/gid START (`--userns` or `--userns=START`, default 100000), 65536 ids.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "100000")]
    pub userns: Option<u32>,
    /// Signal that stops the container (overrides the image's StopSignal).
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Platform to pull if the image is missing.
    #[arg(long)]
    pub platform: Option<String>,
}

/// `--network`: the clap side of [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// A new network namespace with only `lo`.
    None,
    /// The host's network namespace.
    Host,
}

impl From<NetworkArg> for Network {
    fn from(arg: NetworkArg) -> Network {
        match arg {
            NetworkArg::None => Network::None,
            NetworkArg::Host => Network::Host,
        }
    }
}

/// `runner run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container options.
    #[command(flatten)]
    pub options: ContainerArgs,
    /// Options of containers that live on (`-d`).
    #[command(flatten)]
    pub detach: containers::DetachArgs,
    /// Pass descriptors 3 to 3+N-1 on to the container's PID 1 (not with -d).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Image reference.
    pub image: String,
    /// Command and arguments (default: the image's Entrypoint + Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `runner bundle`.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Container options.
    #[command(flatten)]
    pub options: ContainerArgs,
    /// Image reference.
    pub image: String,
    /// Bundle directory to create.
    pub dir: PathBuf,
    /// Command and arguments (default: the image's Entrypoint + Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

impl Cli {
    /// How registries are reached, from the global flags.
    pub fn registry_settings(&self) -> Settings {
        Settings {
            insecure_registries: self.insecure_registries.clone(),
            certs_dir: self.certs_dir.clone(),
        }
    }
}

impl From<&ContainerArgs> for RunOptions {
    fn from(args: &ContainerArgs) -> RunOptions {
        let (network, net) =
            network::mode(args.network.as_deref(), &args.publish, args.publish_all);
        RunOptions {
            name: args.name.clone(),
            env: args.env.clone(),
            workdir: args.workdir.clone(),
            user: args.user.clone(),
            entrypoint: args.entrypoint.clone(),
            hostname: args.hostname.clone(),
            memory: args.memory.clone(),
            cpus: args.cpus,
            pids_limit: args.pids_limit,
            unsafe_no_device_cgroup: args.unsafe_no_device_cgroup,
            network,
            net,
            read_only: args.read_only,
            volumes: args.volumes.clone(),
            tmpfs: args.tmpfs.clone(),
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
            security_opt: args.security_opt.clone(),
            preserve_fds: 0,
            tty: args.tty,
            interactive: args.interactive,
            init: args.init,
            userns: args.userns,
            stop_signal: args.stop_signal.clone(),
            stop_timeout: args.stop_timeout,
        }
    }
}
