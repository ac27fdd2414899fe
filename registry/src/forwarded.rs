//! Requests that reach the registry through a reverse proxy (nginx, HAProxy,
//! Traefik) which terminates TLS: who the client really is, and which
//! scheme and host it used, from `Forwarded` (RFC 7239) or the
//! `X-Forwarded-For`, `-Proto` and `-Host` headers.
//!
//! Those headers are believed only from the configured trusted proxies
//! (`trusted_proxies`, none by default): anybody else could send them to
//! spoof an address (and dodge a rate limit) or a scheme. The chain of
//! addresses is read from the right, the end the trusted proxies wrote:
//! the client is the first address that is not itself a trusted proxy, so
//! a client cannot hide behind a `X-Forwarded-For` it wrote itself.
//!
//! The result goes on the request ([`Origin`]) and replaces its peer
//! address, so the token realm, the access log, the rate limit and the
//! failed-login limit all see the client rather than the proxy.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The scheme and host the client used, as a trusted proxy reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client spoke HTTPS to the proxy.
    pub https: Option<bool>,
    /// The `Host` the client asked for (with its port, if any).
    pub host: Option<String>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) and single addresses (`127.0.0.1`).
    pub fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "trusted_proxies: {s:?} is neither an address nor a CIDR \
                             (write 10.0.0.0/8 or 127.0.0.1)"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    /// Whether no proxy is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address and origin for a request from `peer`, or `None`
    /// when `peer` is not a trusted proxy (its headers are then ignored).
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> Option<(SocketAddr, Origin)> {
        if !self.trusts(peer.ip()) {
            return None;
        }
        let hops = forwarded_elements(headers);
        let (client, origin) = if hops.is_empty() {
            let chain = list_values(headers, "x-forwarded-for")
                .iter()
                .map(|v| parse_node(v))
                .collect::<Vec<_>>();
            let client = self.client_in(&chain);
            let origin = Origin {
                https: list_values(headers, "x-forwarded-proto")
                    .first()
                    .map(|p| p.eq_ignore_ascii_case("https")),
                host: list_values(headers, "x-forwarded-host").into_iter().next(),
            };
            (client, origin)
        } else {
            let chain: Vec<Option<IpAddr>> = hops
                .iter()
                .map(|h| h.for_.as_deref().and_then(parse_node))
                .collect();
            let at = self.client_index(&chain).unwrap_or(0);
            let origin = Origin {
                https: hops[at]
                    .proto
                    .as_deref()
                    .map(|p| p.eq_ignore_ascii_case("https")),
                host: hops[at].host.clone(),
            };
            (chain[at], origin)
        };
        let client = client.map_or(peer, |ip| SocketAddr::new(ip, 0));
        Some((client, origin))
    }

    fn client_in(&self, chain: &[Option<IpAddr>]) -> Option<IpAddr> {
        self.client_index(chain).and_then(|i| chain[i])
    }

    /// Where the walk from the right stops: at the first address that is
    /// not a trusted proxy (the client), the leftmost when all are, or an
    /// entry that is not an address (`unknown`, an obfuscated name), since
    /// what lies left of it cannot be vouched for. `None` for no entries.
    fn client_index(&self, chain: &[Option<IpAddr>]) -> Option<usize> {
        let mut at = None;
        for (i, hop) in chain.iter().enumerate().rev() {
            at = Some(i);
            match hop {
                Some(ip) if self.trusts(*ip) => continue,
                _ => break,
            }
        }
        at
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Every comma-separated value of every `name` header, trimmed.
fn list_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// A node of `Forwarded: for=` or `X-Forwarded-For`: `1.2.3.4`,
/// `1.2.3.4:5678`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// One element of a `Forwarded` header: what one proxy saw.
#[derive(Debug, Default)]
struct Hop {
    for_: Option<String>,
    proto: Option<String>,
    host: Option<String>,
}

/// The elements of every `Forwarded` header, in order. Quoted values may
/// hold commas and semicolons.
fn forwarded_elements(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else { continue };
        for element in split_unquoted(text, ',') {
            let mut hop = Hop::default();
            for pair in split_unquoted(&element, ';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = unquote(v.trim());
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.for_ = Some(v),
                    "proto" => hop.proto = Some(v),
                    "host" => hop.host = Some(v),
                    _ => {}
                }
            }
            hops.push(hop);
        }
    }
    hops
}

fn split_unquoted(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        let last = parts.last_mut().expect("never empty");
        match c {
            _ if escaped => {
                escaped = false;
                last.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                last.push(c);
            }
            '"' => {
                quoted = !quoted;
                last.push(c);
            }
            c if c == sep && !quoted => parts.push(String::new()),
            c => last.push(c),
        }
    }
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_taken_as_it_is() {
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(proxies(&[]).resolve(peer("127.0.0.1:4000"), &h), None);
        assert_eq!(
            proxies(&["10.0.0.0/8"]).resolve(peer("127.0.0.1:4000"), &h),
            None
        );
    }

    #[test]
    fn x_forwarded_headers_from_a_trusted_proxy() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "registry.example:8443"),
        ]);
        let (client, origin) = proxies(&["127.0.0.1"])
            .resolve(peer("127.0.0.1:4000"), &h)
            .unwrap();
        assert_eq!(client.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(origin.https, Some(true));
        assert_eq!(origin.host.as_deref(), Some("registry.example:8443"));
    }

    #[test]
    fn a_client_cannot_spoof_its_address_through_the_proxy() {
        // The client sent "1.1.1.1" itself; nginx appended what it saw.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.2")]);
        let (client, _) = proxies(&["127.0.0.0/8"])
            .resolve(peer("127.0.0.1:4000"), &h)
            .unwrap();
        assert_eq!(client.ip(), "198.51.100.2".parse::<IpAddr>().unwrap());
        // Two trusted proxies in a row: the address before them.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.2, 10.1.2.3")]);
        let (client, _) = proxies(&["127.0.0.0/8", "10.0.0.0/8"])
            .resolve(peer("127.0.0.1:4000"), &h)
            .unwrap();
        assert_eq!(client.ip(), "198.51.100.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rfc_7239_forwarded_with_quotes_ports_and_ipv6() {
        let h = headers(&[(
            "forwarded",
            r#"for=1.1.1.1, for="[2001:db8::7]:4711";proto=https;host="reg.example:8443", for=10.0.0.9;proto=http"#,
        )]);
        let (client, origin) = proxies(&["127.0.0.1/32", "10.0.0.0/8"])
            .resolve(peer("127.0.0.1:4000"), &h)
            .unwrap();
        assert_eq!(client.ip(), "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(origin.https, Some(true));
        assert_eq!(origin.host.as_deref(), Some("reg.example:8443"));
    }

    #[test]
    fn an_unknown_hop_keeps_the_proxy_as_the_client() {
        let h = headers(&[("forwarded", "for=unknown;proto=https")]);
        let (client, origin) = proxies(&["127.0.0.1"])
            .resolve(peer("127.0.0.1:4000"), &h)
            .unwrap();
        assert_eq!(client, peer("127.0.0.1:4000"));
        assert_eq!(origin.https, Some(true));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_rules() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let (client, _) = proxies(&["127.0.0.1"])
            .resolve(peer("[::ffff:127.0.0.1]:4000"), &h)
            .unwrap();
        assert_eq!(client.ip(), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_entries_are_refused_with_the_fix() {
        let e = TrustedProxies::parse(&["10.0.0.0/33".into()]).unwrap_err();
        assert!(e.contains("10.0.0.0/33") && e.contains("CIDR"), "{e}");
    }
}
