//! The `[[upstream]]` tables of the configuration (and `--upstream
//! NAME=URL`): which registries are mirrored, under which path prefix, with
//! which credentials and tag lifetime.
//!
//! ```toml
//! [[upstream]]
//! name = "hub"                         # /v2/hub/library/alpine/... mirrors library/alpine
//! url = "https://registry-1.docker.io" # only from here: never from a request
//! registry = "docker.io"               # containerd's ?ns=docker.io
//! default = true                       # Docker's registry-mirrors: unknown local names
//! username = "me"                      # with password_file; anonymous when absent
//! password_file = "/etc/strata/hub.password"
//! tag_ttl = "5m"                       # a tag is re-checked upstream after this
//! timeout = "30s"                      # connect and between two reads
//! repositories = ["library/alpine", "myorg/**"]  # what `registry sync` pre-fetches
//! tags = "^v?[0-9]"                    # regex on tag names (all tags when absent)
//! exclude = ["myorg/old-*"]            # repository globs left out
//! platforms = ["linux/amd64"]          # of an index, sync only these (all when absent)
//! sync_interval = "6h"                 # `serve` syncs this often (never when absent)
//! keep_for = "30d"                     # GC drops what was not pulled for this long
//! ca_file = "/etc/strata/upstream-ca.pem"  # a private CA for the upstream's TLS
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// One mirrored registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The path prefix: `/v2/<name>/<repository>/...`. One path component.
    pub name: String,
    /// The upstream's base URL (`https://host[:port]`), without credentials.
    pub url: String,
    /// The registry name clients ask for through containerd's `?ns=`.
    #[serde(default)]
    pub registry: Option<String>,
    /// Serve repositories that do not exist locally (Docker's `registry-mirrors`).
    #[serde(default)]
    pub default: bool,
    /// User name for the upstream (Basic, or for the token service).
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (its first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long a mirrored tag is served before the upstream is asked again
    /// (`"30s"`, `"5m"`, `"1h"`, `"0"`); default 5 minutes.
    #[serde(default, deserialize_with = "duration::option")]
    pub tag_ttl: Option<Duration>,
    /// Connect timeout, and the longest wait between two reads; default 30 s.
    #[serde(default, deserialize_with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Repositories `registry sync` pre-fetches: names, or globs (`*`
    /// within a component, `**` across) matched against the upstream's catalog.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Tags synced: a regular expression on the tag name (all when absent).
    #[serde(default)]
    pub tags: Option<String>,
    /// Repository globs left out of the sync.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Platforms (`os/arch[/variant]`) of an index that `registry sync`
    /// fetches; every platform when empty. Pulls always get what they ask.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Sync inside `serve` this often (never when absent).
    #[serde(default, deserialize_with = "duration::option")]
    pub sync_interval: Option<Duration>,
    /// GC deletes the manifests and tags of a mirrored repository not
    /// pulled for this long (kept forever when absent).
    #[serde(default, deserialize_with = "duration::option")]
    pub keep_for: Option<Duration>,
    /// PEM file of the certificate authorities trusted for the upstream's
    /// TLS, besides the webpki roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl UpstreamConfig {
    /// The upstream of `--upstream NAME=URL`.
    pub fn from_flag(flag: &str) -> Result<UpstreamConfig, String> {
        let (name, url) = flag
            .split_once('=')
            .ok_or_else(|| format!("--upstream {flag:?}: expected NAME=URL"))?;
        Ok(UpstreamConfig {
            name: name.to_owned(),
            url: url.to_owned(),
            registry: None,
            default: false,
            username: None,
            password_file: None,
            tag_ttl: None,
            timeout: None,
            repositories: Vec::new(),
            tags: None,
            exclude: Vec::new(),
            platforms: Vec::new(),
            sync_interval: None,
            keep_for: None,
            ca_file: None,
        })
    }

    /// The tag lifetime.
    pub fn tag_ttl(&self) -> Duration {
        self.tag_ttl.unwrap_or(Duration::from_secs(300))
    }

    /// The platforms `registry sync` keeps of an index (empty: all).
    pub fn platforms(&self) -> Result<Vec<store::manifest::Platform>, String> {
        self.platforms
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|e| format!("upstream {}: platforms: {e}", self.name))
            })
            .collect()
    }

    /// The network timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(30))
    }

    /// Check the table: a one-component name, an http(s) URL without
    /// credentials, a path, a query or a fragment.
    pub fn validate(&self) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && self.name.parse::<store::RepoName>().is_ok();
        if !valid_name {
            return Err(format!(
                "upstream name {:?}: one repository path component (a-z, 0-9, . _ -)",
                self.name
            ));
        }
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .ok_or_else(|| format!("upstream {}: the URL must start with http(s)://", self.name))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains(['@', '/', '?', '#', ' ']) {
            return Err(format!(
                "upstream {}: the URL must be scheme://host[:port] only (credentials go in username/password_file)",
                self.name
            ));
        }
        if let Some(tags) = &self.tags {
            regex_automata::meta::Regex::new(tags)
                .map_err(|e| format!("upstream {}: tags {tags:?}: {e}", self.name))?;
        }
        self.platforms()?;
        if self.password_file.is_some() && self.username.is_none() {
            return Err(format!(
                "upstream {}: password_file needs username",
                self.name
            ));
        }
        Ok(())
    }
}

/// `"90s"`, `"5m"`, `"2h"`, `"30d"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and s, m, h or d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(scale)))
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn urls_with_credentials_or_paths_are_refused() {
        let mut u = UpstreamConfig::from_flag("hub=https://registry-1.docker.io").unwrap();
        assert!(u.validate().is_ok());
        u.url = "https://user:pw@host".into();
        assert!(u.validate().is_err());
        u.url = "https://host/path".into();
        assert!(u.validate().is_err());
        u.url = "ftp://host".into();
        assert!(u.validate().is_err());
        u.url = "http://127.0.0.1:5000".into();
        u.platforms = vec!["linux/amd64".into(), "linux/arm64/v8".into()];
        assert!(u.validate().is_ok());
        u.platforms = vec!["amd64".into()];
        assert!(u.validate().unwrap_err().contains("platforms"));
        u.platforms.clear();
        u.url = "http://127.0.0.1:5000".into();
        u.name = "a/b".into();
        assert!(u.validate().is_err());
    }
}
