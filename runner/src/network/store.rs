//! The networks and their address leases on disk: one JSON file,
//! `<root>/networks/state.json`, changed only under the flock of
//! `<root>/networks/lock` and replaced atomically, so two runners never
//! hand out the same address or host port and a crash leaves either the
//! old file or the new one. Readers that only look (`inspect`, `port`)
//! read it without the lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::ports::PortBinding;
use super::subnet::Subnet;
use super::Error;
use crate::paths::Root;

/// The default network's name (Docker's), and its bridge.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default bridge device.
pub const DEFAULT_BRIDGE: &str = "strata0";
/// The default network's subnet: private, and neither Docker's
/// (172.17.0.0/16) nor podman's (10.88.0.0/16). `STRATA_BRIDGE_SUBNET`
/// overrides it when the default network is first made.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/16";

/// One network: a bridge, a subnet and its gateway (the bridge's address).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Name.
    pub name: String,
    /// Random id (64 hex digits).
    pub id: String,
    /// Subnet.
    pub subnet: Subnet,
    /// Gateway: the host's address on the bridge.
    pub gateway: Ipv4Addr,
    /// Bridge device (`strata0`, `strata1`, ...), also the nft table's name.
    pub bridge: String,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// The network namespace (its inode) whose bridge and rules these are:
    /// a runner started in another namespace never touches them.
    #[serde(default)]
    pub netns: u64,
}

impl NetworkConfig {
    /// Whether this runner runs in the network's namespace.
    pub fn is_here(&self) -> bool {
        self.netns == current_netns()
    }
}

/// The inode of this thread's network namespace.
pub fn current_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

/// One container's place on a network (for the time it runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// The network's name.
    pub network: String,
    /// The container's id.
    pub container: String,
    /// Its name (others on the network reach it by this name).
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its `eth0` MAC address.
    pub mac: [u8; 6],
    /// The host end of its veth pair.
    pub veth: String,
    /// Published ports.
    pub ports: Vec<PortBinding>,
}

impl Lease {
    /// `02:42:0a:59:00:02`, as Docker shows it.
    pub fn mac_text(&self) -> String {
        self.mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Everything in `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Db {
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkConfig>,
    /// Leases of running containers.
    pub leases: Vec<Lease>,
}

impl Db {
    /// The leases on network `name`.
    pub fn members(&self, name: &str) -> Vec<&Lease> {
        self.leases.iter().filter(|l| l.network == name).collect()
    }

    /// A bridge name no network uses: `strata1`, `strata2`, ...
    pub fn free_bridge(&self) -> String {
        (1..)
            .map(|n| format!("strata{n}"))
            .find(|b| self.networks.values().all(|n| &n.bridge != b))
            .expect("some bridge name is free")
    }

    /// The network `subnet` would overlap, if any.
    pub fn overlapping(&self, subnet: &Subnet) -> Option<&NetworkConfig> {
        self.networks.values().find(|n| n.subnet.overlaps(subnet))
    }

    /// Adds the default network if it is not there yet.
    pub fn ensure_default(&mut self) -> Result<&NetworkConfig, Error> {
        if !self.networks.contains_key(DEFAULT_NETWORK) {
            let subnet: Subnet = std::env::var("STRATA_BRIDGE_SUBNET")
                .unwrap_or_else(|_| DEFAULT_SUBNET.to_owned())
                .parse()?;
            if let Some(other) = self.overlapping(&subnet) {
                return Err(Error::Overlap(subnet.to_string(), other.name.clone()));
            }
            self.networks.insert(
                DEFAULT_NETWORK.to_owned(),
                NetworkConfig {
                    name: DEFAULT_NETWORK.to_owned(),
                    id: super::random_id(),
                    subnet,
                    gateway: subnet.first_host(),
                    bridge: DEFAULT_BRIDGE.to_owned(),
                    created: super::now_ms(),
                    netns: current_netns(),
                },
            );
        }
        Ok(&self.networks[DEFAULT_NETWORK])
    }
}

fn dir(root: &Root) -> PathBuf {
    root.networks_dir()
}

fn io_err(what: &str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let what = format!("{what} {}", path.display());
    move |e| Error::State(what, e.to_string())
}

/// Reads the state without the lock (a consistent snapshot: the file is
/// replaced atomically).
pub fn read(root: &Root) -> Db {
    fs::read(dir(root).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The state, held under the lock until dropped; [`Locked::save`] writes it.
pub struct Locked {
    _lock: Flock<File>,
    root: Root,
    /// The state as read under the lock.
    pub db: Db,
}

impl Locked {
    /// Takes the lock (waits for another holder) and reads the state.
    pub fn take(root: &Root) -> Result<Locked, Error> {
        let d = dir(root);
        crate::paths::create_private_dir(&d).map_err(io_err("creating", &d))?;
        let path = d.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::State(format!("locking {}", path.display()), e.to_string()))?;
        Ok(Locked {
            _lock: lock,
            root: root.clone(),
            db: read(root),
        })
    }

    /// Writes the state (atomic rename, durable).
    pub fn save(&self) -> Result<(), Error> {
        let path = dir(&self.root).join("state.json");
        let bytes = serde_json::to_vec_pretty(&self.db).expect("state serializes");
        crate::fsutil::write_replace(&path, &bytes, true).map_err(io_err("writing", &path))
    }
}
