//! Container networking beyond `none` and `host`: bridges, veth pairs,
//! addresses, published ports and user networks, built the way podman's
//! netavark and the CNI bridge plugin build them.
//!
//! A container on a network (`--network bridge`, `--network NAME`, or `-p`
//! alone) gets a network namespace of its own from the sandbox, as with
//! `none`. Around it, [`attach`] (before the `clone`, under the networks
//! lock): picks the container's address from the subnet and its host
//! ports, records the lease ([`store`]), makes sure the bridge is there
//! ([`link`]), rewrites the network's nftables table ([`rules`]) and the
//! `/etc/hosts` of every member (so members reach each other by name:
//! hosts entries kept current, rather than an embedded DNS server), and
//! writes the container's `/etc/resolv.conf`. Then [`Attachment::plumb`],
//! called by the sandbox's parent between `clone` and the child's go,
//! creates the veth pair straight into the child's namespace. Dropping the
//! [`Attachment`] (however the run ends) deletes the veth, the lease and
//! the rules; [`clean_stale`] does the same, at the next command, for a
//! runner or monitor that died.
//!
//! Files: [`ports`] (`-p` syntax), [`subnet`] (CIDR arithmetic), [`store`]
//! (networks and leases on disk, locked), [`link`] (rtnetlink), [`rules`]
//! (nft), [`slirp`] (rootless), [`view`] (`network inspect`, `NetworkSettings`, `port`).
//!
//! In rootless mode none of that is possible: [`slirp`] runs a user-space
//! stack instead, started where [`Attachment::plumb`] would be (see
//! [`Connection`]). With `--userns` the runner is still real root, so
//! everything here works unchanged.

mod link;
pub mod ports;
mod rules;
pub mod slirp;
pub mod store;
pub mod subnet;
pub mod view;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::paths::Root;
use ports::{PortBinding, PortSpec, Proto};
use store::{Lease, Locked, NetworkConfig, DEFAULT_NETWORK};
use subnet::Subnet;

/// Errors of networking. Each is one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `-p` is malformed.
    #[error("invalid port {0:?}: {1}")]
    Port(String, String),
    /// A subnet is malformed.
    #[error("invalid subnet {0:?}: {1}")]
    Subnet(String, String),
    /// A gateway is malformed or outside its subnet.
    #[error("invalid gateway {0:?}: {1}")]
    Gateway(String, String),
    /// A subnet overlaps another network's.
    #[error("subnet {0} overlaps network {1:?}")]
    Overlap(String, String),
    /// No network has that name.
    #[error("network {0:?} not found")]
    Unknown(String),
    /// A network of that name exists.
    #[error("network {0:?} already exists")]
    Exists(String),
    /// A name is malformed or reserved.
    #[error("invalid network name {0:?}: {1}")]
    Name(String, String),
    /// Containers still use the network.
    #[error("network {0:?} is in use by {1} container(s)")]
    InUse(String, usize),
    /// A host port is already published, or bound by something else.
    #[error("port {0} is already in use: {1}")]
    PortInUse(String, String),
    /// The subnet has no free address left.
    #[error("network {0:?} has no free address")]
    Exhausted(String),
    /// A netlink request failed.
    #[error("{0}: {1}")]
    Link(String, String),
    /// The network was made from another network namespace.
    #[error("network {0:?} belongs to another network namespace than this runner's")]
    Foreign(String),
    /// nft failed.
    #[error("nftables: {0}")]
    Rules(String),
    /// Reading or writing the networks' state failed.
    #[error("{0}: {1}")]
    State(String, String),
    /// slirp4netns (rootless networking) failed.
    #[error("rootless networking: {0}")]
    Slirp(String),
    /// Not possible for an ordinary user.
    #[error("{0} is not available in rootless mode: {1}")]
    Rootless(String, String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a container asks of the network (from `--network`, `-p`, `-P`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The network to join (`bridge`: the default one).
    pub network: String,
    /// `-p` values, as given.
    pub publish: Vec<String>,
    /// `-P`: publish every EXPOSEd port.
    pub publish_all: bool,
}

impl Request {
    /// Checks the `-p` values; the parsed specs.
    pub fn port_specs(&self) -> Result<Vec<PortSpec>> {
        self.publish.iter().map(|p| p.parse()).collect()
    }

    /// The network's name (empty means the default).
    pub fn network_name(&self) -> &str {
        match self.network.as_str() {
            "" => DEFAULT_NETWORK,
            n => n,
        }
    }
}

/// The container joining a network.
pub struct Member<'a> {
    /// Id.
    pub id: &'a str,
    /// Name (others reach it by this name), if it has one.
    pub name: Option<&'a str>,
    /// Hostname.
    pub hostname: &'a str,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let _ = crate::sys::proc::getrandom(&mut bytes);
    hex::encode(bytes)
}

/// Whether something on the host already holds `port`.
fn bindable(ip: Option<Ipv4Addr>, port: u16, proto: Proto) -> bool {
    let addr = (ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
    match proto {
        Proto::Tcp => TcpListener::bind(addr).is_ok(),
        Proto::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A free host port from the kernel's ephemeral range that no lease holds.
fn free_port(db: &store::Db, taken: &[PortBinding], spec: &PortSpec) -> Result<u16> {
    let ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    for _ in 0..64 {
        let port = match spec.proto {
            Proto::Tcp => TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()),
            Proto::Udp => UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
        }
        .map_err(|e| Error::PortInUse(format!("{ip}:0"), e.to_string()))?
        .port();
        let candidate = PortBinding {
            host_ip: spec.host_ip,
            host_port: port,
            container_port: spec.container_port,
            proto: spec.proto,
        };
        let clash = db.leases.iter().flat_map(|l| &l.ports).chain(taken);
        if !clash.into_iter().any(|b| b.clashes(&candidate)) {
            return Ok(port);
        }
    }
    Err(Error::PortInUse(
        format!("{ip}:*"),
        "no free port found".into(),
    ))
}

/// Host ports for `specs`, checked against every lease and the host.
fn bind_ports(db: &store::Db, specs: &[PortSpec]) -> Result<Vec<PortBinding>> {
    let mut out: Vec<PortBinding> = Vec::new();
    for spec in specs {
        let host_port = match spec.host_port {
            Some(p) => p,
            None => free_port(db, &out, spec)?,
        };
        let b = PortBinding {
            host_ip: spec.host_ip,
            host_port,
            container_port: spec.container_port,
            proto: spec.proto,
        };
        let shown = format!("{}:{}/{}", b.host_ip_text(), host_port, b.proto.as_str());
        if let Some(l) = db
            .leases
            .iter()
            .find(|l| l.ports.iter().any(|p| p.clashes(&b)))
        {
            return Err(Error::PortInUse(
                shown,
                format!("published by container {}", l.name),
            ));
        }
        if out.iter().any(|p| p.clashes(&b)) {
            return Err(Error::PortInUse(shown, "given twice".into()));
        }
        if spec.host_port.is_some() && !bindable(spec.host_ip, host_port, spec.proto) {
            return Err(Error::PortInUse(
                shown,
                "another program listens on it".into(),
            ));
        }
        out.push(b);
    }
    Ok(out)
}

/// The text of a member's `/etc/hosts`: itself, then every other member
/// of its network by name.
fn hosts_text(me: &Lease, members: &[&Lease]) -> String {
    let entry = |l: &Lease| {
        let mut names = vec![l.hostname.as_str()];
        if !l.name.is_empty() && l.name != l.hostname {
            names.insert(0, l.name.as_str());
        }
        format!("{}\t{}\n", l.ip, names.join(" "))
    };
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    text.push_str(&entry(me));
    for l in members.iter().filter(|l| l.container != me.container) {
        text.push_str(&entry(l));
    }
    text
}

/// The host's resolver configuration without loopback name servers (a
/// container cannot reach the host's 127.0.0.53); Docker's public
/// fallbacks when none is left.
fn resolv_text() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers = 0;
    let mut text = String::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            match words.next().map(|a| a.parse::<std::net::IpAddr>()) {
                Some(Ok(a)) if a.is_loopback() => continue,
                _ => servers += 1,
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    if servers == 0 {
        text.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    text
}

/// Rewrites an existing file in place (it is bind-mounted into a running
/// container, so a rename would not be seen); a missing one is left out.
fn write_in_place(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    match std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
    {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .map_err(|e| Error::State(format!("writing {}", path.display()), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::State(
            format!("writing {}", path.display()),
            e.to_string(),
        )),
    }
}

/// Rewrites the hosts file of every member of `network`.
fn refresh_hosts(root: &Root, db: &store::Db, network: &str) -> Result<()> {
    let members = db.members(network);
    for me in &members {
        let path = root.container(&me.container).join("etc").join("hosts");
        write_in_place(&path, &hosts_text(me, &members))?;
    }
    Ok(())
}

/// A container's place on a network while it runs: released (veth, lease,
/// rules, hosts entries) when dropped.
pub struct Attachment {
    root: Root,
    network: NetworkConfig,
    lease: Lease,
}

/// Joins the member to the network `request` names: address, host ports,
/// the lease, the bridge, the rules, the `/etc` files (`<state>/etc` must
/// exist). Nothing is left behind when it fails.
pub fn attach(
    root: &Root,
    request: &Request,
    member: &Member<'_>,
    exposed: impl IntoIterator<Item = String>,
) -> Result<Attachment> {
    let mut specs = request.port_specs()?;
    if request.publish_all {
        specs.extend(ports::exposed(exposed));
    }
    let mut locked = Locked::take(root)?;
    let name = request.network_name();
    if name == DEFAULT_NETWORK {
        locked.db.ensure_default()?;
    }
    let network = locked
        .db
        .networks
        .get(name)
        .cloned()
        .ok_or_else(|| Error::Unknown(name.to_owned()))?;
    if !network.is_here() {
        return Err(Error::Foreign(name.to_owned()));
    }
    // A lease left by an earlier run of the same container goes first.
    locked.db.leases.retain(|l| l.container != member.id);
    let ports = bind_ports(&locked.db, &specs)?;
    let used: Vec<Ipv4Addr> = locked.db.members(name).iter().map(|l| l.ip).collect();
    let ip = network
        .subnet
        .hosts()
        .find(|ip| *ip != network.gateway && !used.contains(ip))
        .ok_or_else(|| Error::Exhausted(name.to_owned()))?;
    let o = ip.octets();
    let lease = Lease {
        network: name.to_owned(),
        container: member.id.to_owned(),
        name: member.name.unwrap_or_default().to_owned(),
        hostname: member.hostname.to_owned(),
        ip,
        mac: [0x02, 0x42, o[0], o[1], o[2], o[3]],
        veth: format!("vs{}", &member.id[..12.min(member.id.len())]),
        ports,
    };
    locked.db.leases.push(lease.clone());
    link::ensure_bridge(&network.bridge, network.gateway, network.subnet.prefix())?;
    rules::apply(&network, &locked.db.members(name))?;
    if let Err(e) = locked.save() {
        locked.db.leases.retain(|l| l.container != member.id);
        let _ = rules::apply(&network, &locked.db.members(name));
        return Err(e);
    }
    let attachment = Attachment {
        root: root.clone(),
        network,
        lease,
    };
    let etc = root.container(member.id).join("etc");
    refresh_hosts(root, &locked.db, name)?;
    write_in_place(&etc.join("resolv.conf"), &resolv_text())?;
    drop(locked);
    Ok(attachment)
}

impl Attachment {
    /// The lease (address, MAC, ports).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Connects the network namespace of `pid` (the container's PID 1,
    /// not yet running its command) to the bridge.
    pub fn plumb(&self, pid: i32) -> Result<()> {
        link::plumb(
            pid,
            &link::Endpoint {
                veth: &self.lease.veth,
                bridge: &self.network.bridge,
                ip: self.lease.ip,
                prefix: self.network.subnet.prefix(),
                gateway: self.network.gateway,
                mac: self.lease.mac,
            },
        )
    }
}

/// How a container on a network is connected while it runs: dropped when
/// the run ends, which takes the connection down.
pub enum Connection {
    /// As root: a veth on a bridge.
    Bridge(Attachment),
    /// Rootless: slirp4netns, started by [`Connection::plumb`].
    Slirp(slirp::Plan, std::cell::RefCell<Option<slirp::Slirp>>),
}

impl Connection {
    /// Connects `netns`, the network namespace of `pid` (the container's
    /// PID 1, not yet running its command).
    pub fn plumb(&self, pid: i32, netns: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        match self {
            Connection::Bridge(a) => a.plumb(pid),
            Connection::Slirp(plan, running) => {
                *running.borrow_mut() = Some(plan.start(netns)?);
                Ok(())
            }
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let _ = release(&self.root, std::slice::from_ref(&self.lease.container));
    }
}

/// Removes the leases of `containers`: their veths, rules and hosts entries.
fn release(root: &Root, containers: &[String]) -> Result<()> {
    let mut locked = Locked::take(root)?;
    let (gone, kept): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut locked.db.leases)
        .into_iter()
        .partition(|l| containers.contains(&l.container));
    locked.db.leases = kept;
    if gone.is_empty() {
        return Ok(());
    }
    locked.save()?;
    let mut networks: Vec<&str> = gone.iter().map(|l| l.network.as_str()).collect();
    networks.sort_unstable();
    networks.dedup();
    // The kernel side only from the network's own namespace.
    let here = |name: &str| locked.db.networks.get(name).is_some_and(|n| n.is_here());
    for lease in gone.iter().filter(|l| here(&l.network)) {
        let _ = link::delete(&lease.veth);
    }
    for name in networks {
        if let Some(net) = locked.db.networks.get(name).filter(|n| n.is_here()) {
            rules::apply(net, &locked.db.members(name))?;
        }
        refresh_hosts(root, &locked.db, name)?;
    }
    Ok(())
}

/// After a crash: releases every lease whose container `live` says no
/// longer runs. Cheap when nothing is stale (no lock, no netlink, no nft).
pub fn clean_stale(root: &Root, live: impl Fn(&str) -> bool) -> Result<()> {
    let stale: Vec<String> = store::read(root)
        .leases
        .iter()
        .filter(|l| !live(&l.container))
        .map(|l| l.container.clone())
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    release(root, &stale)
}

fn check_name(name: &str) -> Result<()> {
    if ["bridge", "host", "none", "default"].contains(&name) {
        return Err(Error::Name(name.to_owned(), "the name is reserved".into()));
    }
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::Name(
            name.to_owned(),
            "use letters, digits, '_', '.' and '-' (64 at most)".into(),
        ));
    }
    Ok(())
}

/// `network create`: a new network with its own bridge (made now, with its
/// rules table). Without `--subnet`, the first free /24 of 10.90.0.0/16.
pub fn create(
    root: &Root,
    name: &str,
    subnet: Option<&str>,
    gateway: Option<&str>,
) -> Result<NetworkConfig> {
    check_name(name)?;
    if crate::rootless::active() {
        return Err(Error::Rootless(
            "network create".into(),
            "a network is a bridge; rootless containers get slirp4netns (--network bridge)".into(),
        ));
    }
    let subnet = subnet.map(str::parse::<Subnet>).transpose()?;
    let mut locked = Locked::take(root)?;
    locked.db.ensure_default()?;
    if locked.db.networks.contains_key(name) {
        return Err(Error::Exists(name.to_owned()));
    }
    let subnet = match subnet {
        Some(s) => {
            if let Some(other) = locked.db.overlapping(&s) {
                return Err(Error::Overlap(s.to_string(), other.name.clone()));
            }
            s
        }
        None => (0..=255u32)
            .map(|n| Subnet::try_from(format!("10.90.{n}.0/24")).expect("valid"))
            .find(|s| locked.db.overlapping(s).is_none())
            .ok_or_else(|| Error::Subnet("10.90.0.0/16".into(), "no free /24 left".into()))?,
    };
    let gateway = match gateway {
        None => subnet.first_host(),
        Some(g) => {
            let ip: Ipv4Addr = g
                .parse()
                .map_err(|_| Error::Gateway(g.to_owned(), "not an IPv4 address".into()))?;
            if !subnet.is_host(ip) {
                return Err(Error::Gateway(
                    g.to_owned(),
                    format!("not a host address of {subnet}"),
                ));
            }
            ip
        }
    };
    let net = NetworkConfig {
        name: name.to_owned(),
        id: random_id(),
        subnet,
        gateway,
        bridge: locked.db.free_bridge(),
        created: now_ms(),
        netns: store::current_netns(),
    };
    let made = link::ensure_bridge(&net.bridge, net.gateway, net.subnet.prefix())
        .and_then(|()| rules::apply(&net, &[]))
        .and_then(|()| {
            locked.db.networks.insert(name.to_owned(), net.clone());
            locked.save()
        });
    if let Err(e) = made {
        let _ = rules::remove(&net);
        let _ = link::delete(&net.bridge);
        return Err(e);
    }
    Ok(net)
}

/// `network ls`: every network, the default one included.
pub fn list(root: &Root) -> Vec<NetworkConfig> {
    let mut db = store::read(root);
    let _ = db.ensure_default();
    db.networks.into_values().collect()
}

/// `network rm`: removes a network no container uses: its bridge, rules
/// and record. The default network cannot be removed.
pub fn remove(root: &Root, name: &str) -> Result<()> {
    if name == DEFAULT_NETWORK {
        return Err(Error::Name(
            name.to_owned(),
            "the default network cannot be removed".into(),
        ));
    }
    let mut locked = Locked::take(root)?;
    let net = locked
        .db
        .networks
        .get(name)
        .cloned()
        .ok_or_else(|| Error::Unknown(name.to_owned()))?;
    if !net.is_here() {
        return Err(Error::Foreign(name.to_owned()));
    }
    let users = locked.db.members(name).len();
    if users > 0 {
        return Err(Error::InUse(name.to_owned(), users));
    }
    rules::remove(&net)?;
    link::delete(&net.bridge)?;
    locked.db.networks.remove(name);
    locked.save()
}
