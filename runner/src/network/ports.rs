//! Published ports: the `-p [IP:][HOSTPORT:]CTRPORT[/tcp|/udp]` syntax,
//! parsed at the boundary into [`PortSpec`] (what was asked) and, once a
//! host port is chosen, [`PortBinding`] (what a lease holds).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::Error;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`, as nft and Docker write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One `-p` as given: host address and port may be left to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address to publish on (`None`: every address of the host).
    pub host_ip: Option<Ipv4Addr>,
    /// Host port (`None`: a free one).
    pub host_port: Option<u16>,
    /// The container's port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

fn port(text: &str, spec: &str) -> Result<u16, Error> {
    if text.contains('-') {
        return Err(Error::Port(
            spec.to_owned(),
            "port ranges are not supported".into(),
        ));
    }
    text.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::Port(spec.to_owned(), format!("{text:?} is not a port (1-65535)")))
}

impl std::str::FromStr for PortSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<PortSpec, Error> {
        let (rest, proto) = match spec.rsplit_once('/') {
            None => (spec, Proto::Tcp),
            Some((r, "tcp")) => (r, Proto::Tcp),
            Some((r, "udp")) => (r, Proto::Udp),
            Some((_, p)) => {
                return Err(Error::Port(
                    spec.to_owned(),
                    format!("unknown protocol {p:?} (use tcp or udp)"),
                ))
            }
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [i, h, c] => (Some(*i), Some(*h), *c),
            _ => return Err(Error::Port(
                spec.to_owned(),
                "use [IP:][HOSTPORT:]CTRPORT[/tcp|/udp] (IPv6 host addresses are not supported)"
                    .into(),
            )),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => Some(i.parse::<Ipv4Addr>().map_err(|_| {
                Error::Port(spec.to_owned(), format!("{i:?} is not an IPv4 address"))
            })?),
        }
        .filter(|ip| !ip.is_unspecified());
        Ok(PortSpec {
            host_ip,
            host_port: host
                .filter(|h| !h.is_empty())
                .map(|h| port(h, spec))
                .transpose()?,
            container_port: port(ctr, spec)?,
            proto,
        })
    }
}

/// A published port as leased: the host port is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address (`None`: every address).
    pub host_ip: Option<Ipv4Addr>,
    /// Host port.
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl PortBinding {
    /// Whether `self` and `other` would catch the same packets.
    pub fn clashes(&self, other: &PortBinding) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    /// Docker's `HostIp` field: `0.0.0.0` for every address.
    pub fn host_ip_text(&self) -> String {
        self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
    }
}

impl fmt::Display for PortBinding {
    /// As `docker port` prints it: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port,
            self.proto.as_str(),
            self.host_ip_text(),
            self.host_port
        )
    }
}

/// The ports an image EXPOSEs (`ExposedPorts` keys like `80/tcp`), as `-P`
/// publishes them: each on a free host port of every address.
pub fn exposed(keys: impl IntoIterator<Item = String>) -> Vec<PortSpec> {
    keys.into_iter()
        .filter_map(|k| k.parse::<PortSpec>().ok())
        .filter(|p| p.host_port.is_none() && p.host_ip.is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_docker_accepts() {
        let p: PortSpec = "80".parse().unwrap();
        assert_eq!((p.host_ip, p.host_port, p.container_port), (None, None, 80));
        let p: PortSpec = "8080:80/udp".parse().unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.proto),
            (Some(8080), 80, Proto::Udp)
        );
        let p: PortSpec = "127.0.0.1:8080:80".parse().unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        let p: PortSpec = "127.0.0.1::80".parse().unwrap();
        assert_eq!(p.host_port, None);
        let p: PortSpec = "0.0.0.0:81:80".parse().unwrap();
        assert_eq!(p.host_ip, None);
    }

    #[test]
    fn bad_ports_are_refused() {
        for bad in [
            "",
            "0",
            "70000",
            "80/sctp",
            "x:80",
            "1.2.3:80:80",
            "1:2:3:4",
            "80-81",
        ] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn clashes_when_addresses_overlap() {
        let b = |ip: Option<Ipv4Addr>, port| PortBinding {
            host_ip: ip,
            host_port: port,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert!(b(None, 80).clashes(&b(Some(Ipv4Addr::LOCALHOST), 80)));
        assert!(!b(Some(Ipv4Addr::LOCALHOST), 80).clashes(&b(Some(Ipv4Addr::new(10, 0, 0, 1)), 80)));
        assert!(!b(None, 80).clashes(&b(None, 81)));
    }
}
