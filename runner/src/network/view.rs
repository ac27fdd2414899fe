//! What the network commands show, with Docker's field names: `network
//! inspect`, a container's `NetworkSettings` (in `runner inspect`) and
//! its published ports (`runner port`).

use serde_json::{json, Map, Value};

use super::ports::PortBinding;
use super::slirp;
use super::store::{self, Lease, NetworkConfig};
use crate::paths::Root;

/// `network inspect NAME`: one network as Docker shows it (`created`
/// formats its creation time, ms since the epoch).
pub fn network(root: &Root, name: &str, created: impl Fn(u64) -> String) -> Option<Value> {
    let mut db = store::read(root);
    let _ = db.ensure_default();
    let net = db.networks.get(name)?;
    let containers: Map<String, Value> = db
        .members(name)
        .into_iter()
        .map(|l| {
            (
                l.container.clone(),
                json!({
                    "Name": l.name,
                    "MacAddress": l.mac_text(),
                    "IPv4Address": format!("{}/{}", l.ip, net.subnet.prefix()),
                }),
            )
        })
        .collect();
    Some(json!({
        "Name": net.name,
        "Id": net.id,
        "Created": created(net.created),
        "Scope": "local",
        "Driver": "bridge",
        "IPAM": {"Driver": "default", "Config": [{
            "Subnet": net.subnet.to_string(),
            "Gateway": net.gateway.to_string(),
        }]},
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": net.bridge},
    }))
}

/// The lease of container `id` and its network, if it is on one now.
pub fn lease(root: &Root, id: &str) -> Option<(Lease, NetworkConfig)> {
    let db = store::read(root);
    let lease = db.leases.iter().find(|l| l.container == id)?.clone();
    let net = db.networks.get(&lease.network)?.clone();
    Some((lease, net))
}

/// Container `id`'s published ports (none unless it runs): its lease's,
/// or in rootless mode its slirp4netns's.
pub fn ports(root: &Root, id: &str) -> Vec<PortBinding> {
    match lease(root, id) {
        Some((l, _)) => l.ports,
        None => slirp::published(&root.container(id)).map_or_else(Vec::new, |r| r.ports),
    }
}

/// Docker's `Ports` map: `"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`.
fn ports_map(ports: &[PortBinding]) -> Value {
    let mut map = Map::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.proto.as_str());
        let entry = map.entry(key).or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.push(json!({"HostIp": p.host_ip_text(), "HostPort": p.host_port.to_string()}));
        }
    }
    Value::Object(map)
}

/// `NetworkSettings` of container `id`: empty addresses unless it runs on
/// a network.
pub fn settings(root: &Root, id: &str) -> Value {
    let Some((l, net)) = lease(root, id) else {
        if let Some(r) = slirp::published(&root.container(id)) {
            return json!({
                "IPAddress": slirp::GUEST_IP.to_string(),
                "IPPrefixLen": slirp::PREFIX,
                "Gateway": slirp::GATEWAY.to_string(),
                "MacAddress": "",
                "Ports": ports_map(&r.ports),
                "Networks": {"slirp4netns": {
                    "IPAddress": slirp::GUEST_IP.to_string(),
                    "IPPrefixLen": slirp::PREFIX,
                    "Gateway": slirp::GATEWAY.to_string(),
                }},
            });
        }
        return json!({
            "IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0,
            "Ports": {}, "Networks": {},
        });
    };
    let endpoint = json!({
        "NetworkID": net.id,
        "IPAddress": l.ip.to_string(),
        "IPPrefixLen": net.subnet.prefix(),
        "Gateway": net.gateway.to_string(),
        "MacAddress": l.mac_text(),
        "Aliases": if l.name.is_empty() { json!([]) } else { json!([l.name]) },
    });
    json!({
        "IPAddress": l.ip.to_string(),
        "IPPrefixLen": net.subnet.prefix(),
        "Gateway": net.gateway.to_string(),
        "MacAddress": l.mac_text(),
        "Ports": ports_map(&l.ports),
        "Networks": {net.name.clone(): endpoint},
    })
}
