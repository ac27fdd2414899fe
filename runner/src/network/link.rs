//! The kernel side of a network, over rtnetlink (no `ip` binary): the
//! bridge and its gateway address, the veth pair of a container (the host
//! end on the bridge, the other end created right inside the container's
//! network namespace as `eth0`), its address and default route, and the
//! two sysctls a bridge with published ports needs.
//!
//! Each call runs its own current-thread tokio runtime, so it starts no
//! thread: the sandbox `clone`s single-threaded right after. To configure
//! `eth0`, the calling thread enters the container's namespace only long
//! enough to open a netlink socket there (a socket stays in the namespace
//! it was made in), then returns to its own.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use nix::sched::CloneFlags;
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

use super::Error;

fn link_err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |e| Error::Link(what, describe(&e))
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
        _ => 0,
    }
}

/// Runs `body` with a netlink handle in the current network namespace.
fn with_handle<T, F, Fut>(what: &str, body: F) -> Result<T, Error>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::Link(what.to_owned(), e.to_string()))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::Link(what.to_owned(), e.to_string()))?;
        tokio::spawn(conn);
        body(handle).await
    })
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == libc::ENODEV => Ok(None),
        Err(e) => Err(link_err(format!("looking up {name}"))(e)),
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|e| Error::Link(format!("writing {path}"), e.to_string()))
}

/// Makes sure bridge `name` exists, holds `gateway/prefix` and is up; turns
/// on forwarding, and `route_localnet` on the bridge so that connections
/// to a port published on 127.0.0.1 can be routed to a container.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), Error> {
    with_handle("creating the bridge", |h| async move {
        let index = match index_of(&h, name).await? {
            Some(i) => i,
            None => {
                match h.link().add(LinkBridge::new(name).build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == libc::EEXIST => {}
                    Err(e) => return Err(link_err(format!("creating bridge {name}"))(e)),
                }
                index_of(&h, name)
                    .await?
                    .ok_or_else(|| Error::Link(name.to_owned(), "vanished".into()))?
            }
        };
        h.address()
            .add(index, IpAddr::V4(gateway), prefix)
            .replace()
            .execute()
            .await
            .map_err(link_err(format!("adding {gateway}/{prefix} to {name}")))?;
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(link_err(format!("bringing {name} up")))?;
        Ok(())
    })?;
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
        "1",
    )
}

/// Deletes link `name` (with a veth, its peer too); gone already is fine.
pub fn delete(name: &str) -> Result<(), Error> {
    with_handle("deleting a link", |h| async move {
        let Some(index) = index_of(&h, name).await? else {
            return Ok(());
        };
        match h.link().del(index).execute().await {
            Err(e) if errno(&e) != libc::ENODEV => Err(link_err(format!("deleting {name}"))(e)),
            _ => Ok(()),
        }
    })
}

/// The container end of a veth pair, as [`plumb`] sets it up.
pub struct Endpoint<'a> {
    /// The host end's name.
    pub veth: &'a str,
    /// The bridge the host end joins.
    pub bridge: &'a str,
    /// `eth0`'s address and prefix length.
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// The default route's gateway.
    pub gateway: Ipv4Addr,
    /// `eth0`'s MAC address.
    pub mac: [u8; 6],
}

/// Connects the network namespace of process `pid` to its bridge: a veth
/// pair whose host end joins the bridge and whose other end is `eth0` in
/// the namespace, with its address and a default route via the gateway.
pub fn plumb(pid: i32, end: &Endpoint<'_>) -> Result<(), Error> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&ns_path).map_err(|e| Error::Link(ns_path.clone(), e.to_string()))?;
    let own = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::Link("/proc/thread-self/ns/net".into(), e.to_string()))?;
    let ns_fd = ns.as_raw_fd();
    with_handle("connecting the container", |h| async move {
        let bridge = index_of(&h, end.bridge)
            .await?
            .ok_or_else(|| Error::Link(end.bridge.to_owned(), "no such bridge".into()))?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_owned())
            .address(end.mac.to_vec())
            .setns_by_fd(ns_fd)
            .build();
        let veth = LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(
            rtnetlink::packet_route::link::InfoKind::Veth,
        )
        .name(end.veth.to_owned())
        .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
            rtnetlink::packet_route::link::InfoVeth::Peer(peer),
        ))
        .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .map_err(link_err(format!("creating veth {}", end.veth)))?;
        let host_end = index_of(&h, end.veth)
            .await?
            .ok_or_else(|| Error::Link(end.veth.to_owned(), "vanished".into()))?;
        h.link()
            .set(
                LinkUnspec::new_with_index(host_end)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(link_err(format!(
                "attaching {} to {}",
                end.veth, end.bridge
            )))?;
        Ok(())
    })?;
    // A netlink socket inside the container's namespace configures eth0.
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::Link(format!("entering {ns_path}"), e.to_string()))?;
    let configured = with_handle("configuring eth0", |h| async move {
        let eth0 = index_of(&h, "eth0")
            .await?
            .ok_or_else(|| Error::Link("eth0".into(), "not in the container".into()))?;
        h.address()
            .add(eth0, IpAddr::V4(end.ip), end.prefix)
            .execute()
            .await
            .map_err(link_err(format!(
                "adding {}/{} to eth0",
                end.ip, end.prefix
            )))?;
        h.link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(link_err("bringing eth0 up"))?;
        h.route()
            .add(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(end.gateway)
                    .output_interface(eth0)
                    .build(),
            )
            .execute()
            .await
            .map_err(link_err(format!(
                "adding the default route via {}",
                end.gateway
            )))?;
        Ok(())
    });
    let back = nix::sched::setns(&own, CloneFlags::CLONE_NEWNET);
    configured?;
    back.map_err(|e| Error::Link("returning to the runner's namespace".into(), e.to_string()))
}
