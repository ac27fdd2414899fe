//! The network commands' flags (`runner network ...`, `runner port`) and
//! how `--network`, `-p` and `-P` become the run options' network mode.

use clap::{Args, Subcommand};

use crate::network::Request;
use crate::spec::Network;

/// `runner network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network: a bridge of its own, a subnet, NAT.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show networks as JSON.
    Inspect {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks no container uses.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `runner network create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Subnet in CIDR form (default: the first free /24 of 10.90.0.0/16).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway, the host's address on the bridge (default: the subnet's first address).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Network name.
    pub name: String,
}

/// `runner port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container.
    pub container: String,
    /// Only this container port (`80` or `80/tcp`).
    pub port: Option<String>,
}

/// The network mode and request for `--network` (none, host, bridge or a
/// network's name), `-p` and `-P`: publishing without `--network` means
/// the default bridge; nothing at all means `none`.
pub fn mode(network: Option<&str>, publish: &[String], publish_all: bool) -> (Network, Request) {
    let bridge = |name: &str| Request {
        network: name.to_owned(),
        publish: publish.to_vec(),
        publish_all,
    };
    let plain = Request {
        publish: publish.to_vec(),
        ..Request::default()
    };
    match network {
        None if publish.is_empty() && !publish_all => (Network::None, plain),
        None | Some("bridge" | "default") => (Network::Bridge, bridge("bridge")),
        Some("none") => (Network::None, plain),
        Some("host") => (Network::Host, plain),
        Some(name) => (Network::Bridge, bridge(name)),
    }
}
