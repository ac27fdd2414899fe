//! IPv4 subnets (`10.89.0.0/16`): parsing, overlap, and the addresses a
//! network hands out (everything but the network address, the gateway and
//! the broadcast address).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::Error;

/// An IPv4 subnet whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.base
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(Ipv4Addr::from(other.base)) || other.contains(Ipv4Addr::from(self.base))
    }

    /// The first host address: the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Host addresses, in order (neither the network nor the broadcast address).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let last = self.base | !self.mask();
        (self.base + 1..last).map(Ipv4Addr::from)
    }

    /// Whether `ip` can be a host of the subnet.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        self.contains(ip) && n != self.base && n != self.base | !self.mask()
    }
}

impl std::str::FromStr for Subnet {
    type Err = Error;

    fn from_str(text: &str) -> Result<Subnet, Error> {
        let bad = |why: &str| Error::Subnet(text.to_owned(), why.to_owned());
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("use ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| bad("the prefix length must be 8 to 30"))?;
        let subnet = Subnet {
            base: u32::from(ip) & (u32::MAX << (32 - u32::from(prefix))),
            prefix,
        };
        if subnet.base != u32::from(ip) {
            return Err(bad(&format!("host bits set (did you mean {subnet}?)")));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;

    fn try_from(text: String) -> Result<Subnet, Error> {
        text.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let s: Subnet = "10.89.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.89.0.0/16");
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 89, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 89, 255, 255)));
        assert!(!s.is_host(Ipv4Addr::new(10, 89, 255, 255)));
        for bad in [
            "10.89.0.0",
            "10.89.0.1/16",
            "10.89.0.0/31",
            "10.89.0.0/x",
            "x/16",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap() {
        let a: Subnet = "10.89.0.0/16".parse().unwrap();
        let b: Subnet = "10.89.4.0/24".parse().unwrap();
        let c: Subnet = "10.90.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        let small: Subnet = "192.168.7.0/30".parse().unwrap();
        assert_eq!(small.hosts().count(), 2);
    }
}
