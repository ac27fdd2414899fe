//! Image references (`[registry/]repository[:tag][@digest]`), parsed with
//! Docker's defaults: no registry means Docker Hub, no tag means `latest`.

use std::fmt;
use std::str::FromStr;

use crate::image::digest::Digest;

/// Errors from parsing an image reference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference is malformed.
    #[error("invalid image reference {text:?}: {reason}")]
    Invalid {
        /// The rejected text.
        text: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

const DOCKER_HUB: &str = "docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with an optional port (`localhost:5000`).
    pub registry: String,
    /// Repository name (`library/busybox`).
    pub repository: String,
    /// Tag, if any. A reference without tag or digest gets `latest`.
    pub tag: Option<String>,
    /// Digest, if pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference_str(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host that serves the registry API (Docker Hub's API host differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A registry host: DNS labels or an IPv4 address, with an optional port.
/// Anything else (`#`, `?`, `@`, spaces...) would change the URL we build.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && name.len() <= 253 && name.split('.').all(label_ok)
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| invalid(&e.to_string()))?),
            ),
            None => (text, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(invalid("bad tag"));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        if !valid_host(&registry) {
            return Err(invalid("bad registry host (want host[:port])"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_component) {
            return Err(invalid("bad repository name"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_registry_with_port_and_tag() {
        let r: Reference = "localhost:5000/tools/busybox:1.36".parse().unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "tools/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.36"));
    }

    #[test]
    fn hub_short_name_gets_library_and_latest() {
        let r: Reference = "busybox".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn port_without_tag_is_not_a_tag() {
        let r: Reference = "127.0.0.1:5000/app".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        for bad in [
            "evil.com#.x/repo",
            "a.b?c/repo",
            "user@host.io/repo",
            "host.io:/repo",
            "host.io:12x/repo",
            "-a.io/repo",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} parsed");
        }
        assert_eq!(r.reference_str(), "latest");
    }

    #[test]
    fn rejects_uppercase_repository() {
        assert!("localhost:5000/Busybox".parse::<Reference>().is_err());
    }
}
