//! NAT and isolation rules, one nftables table per network (`table ip
//! strataN`, named after the bridge), written by the `nft` binary.
//!
//! The table is a pure function of the network and its leases: every
//! change rewrites it whole in one `nft -f` transaction (create, delete,
//! create again, so it never exists half-made), and removing a network is
//! one `delete table`. Nothing is ever left that the runner's state does
//! not describe, and after a crash re-deriving the table from the leases
//! that are still live is the whole repair. The chains:
//! - `prerouting` and `output` (nat): DNAT of each published port to its
//!   container, for packets addressed to a local address of the host
//!   (`fib daddr type local`), or to the `-p IP:` given; `output` covers
//!   connections the host itself makes, including to 127.0.0.1, which the
//!   bridge's `route_localnet` lets the kernel route;
//! - `postrouting` (nat): masquerade of the subnet's traffic leaving by
//!   any other interface, and of loopback-sourced traffic entering the
//!   bridge (a container cannot answer 127.0.0.1);
//! - `forward` (filter): drops traffic from this bridge to any other
//!   `strata*` bridge: networks are isolated from each other.

use std::io::Write;
use std::process::{Command, Stdio};

use super::store::{Lease, NetworkConfig};
use super::Error;

/// The nft script that makes the table of `net` hold `leases`' rules.
pub fn ruleset(net: &NetworkConfig, leases: &[&Lease]) -> String {
    let table = &net.bridge;
    let br = &net.bridge;
    let subnet = net.subnet;
    let mut dnat = String::new();
    for lease in leases {
        for p in &lease.ports {
            let dest = match p.host_ip {
                Some(ip) => format!("ip daddr {ip}"),
                None => "fib daddr type local".to_owned(),
            };
            dnat.push_str(&format!(
                "\t\t{dest} {proto} dport {hp} dnat to {ip}:{cp}\n",
                proto = p.proto.as_str(),
                hp = p.host_port,
                ip = lease.ip,
                cp = p.container_port
            ));
        }
    }
    format!(
        "table ip {table}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{dnat}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{dnat}\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{br}\" masquerade\n\
         \t\tip saddr 127.0.0.0/8 oifname \"{br}\" masquerade\n\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{br}\" oifname != \"{br}\" oifname \"strata*\" drop\n\t}}\n\
         }}\n"
    )
}

fn nft(script: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Rules(format!(
                "running nft: {e} (is the nftables package installed?)"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Rules(format!("running nft: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Rules(
            text.lines().next().unwrap_or("nft failed").to_owned(),
        ));
    }
    Ok(())
}

/// Writes the table of `net` for `leases`, in one transaction.
pub fn apply(net: &NetworkConfig, leases: &[&Lease]) -> Result<(), Error> {
    nft(&ruleset(net, leases))
}

/// Removes the table of `net` (absent already is fine).
pub fn remove(net: &NetworkConfig) -> Result<(), Error> {
    let t = &net.bridge;
    nft(&format!("table ip {t}\ndelete table ip {t}\n"))
}
