//! The registry's configuration: a TOML file, overridden by environment
//! variables and flags (the binary applies those on top of [`Config::load`]).
//!
//! Every option is documented in `docs/operations.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use store::StoreConfig;

use crate::startup::Error;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory for the embedded defaults (file storage + SQLite).
    pub data: PathBuf,
    /// Object storage URL; defaults to `file://<data>/storage`.
    pub storage: Option<String>,
    /// Database URL; defaults to `sqlite://<data>/registry.db`.
    pub database: Option<String>,
    /// Accept manifests referencing content not pushed to the repository.
    pub allow_sparse: bool,
    /// HTTPS settings; plain HTTP when absent.
    pub tls: Option<TlsConfig>,
    /// Authentication and access control; open access when absent.
    pub auth: Option<AuthConfig>,
    /// Garbage collection.
    pub gc: GcConfig,
    /// Per-client rate limit.
    pub limits: LimitsConfig,
    /// Log format: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-*` headers are
    /// believed (CIDRs or addresses; none by default), see `docs/deploy.md`.
    pub trusted_proxies: Vec<String>,
    /// Mirrored registries (`[[upstream]]` tables), see `docs/mirror.md`.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<crate::mirror::config::UpstreamConfig>,
    /// Immutable tags (`[[immutable]]` tables), see `docs/policies.md`.
    pub immutable: Vec<crate::policy::ImmutableRule>,
    /// Retention rules (`[[retention]]` tables), see `docs/policies.md`.
    pub retention: Vec<crate::policy::retention::RetentionConfig>,
    /// Byte budgets (`[[quota]]` tables), see `docs/policies.md`.
    #[serde(rename = "quota")]
    pub quotas: Vec<crate::policy::QuotaRule>,
    /// Webhooks (`[[webhook]]` tables), see `docs/policies.md`.
    #[serde(rename = "webhook")]
    pub webhooks: Vec<crate::events::WebhookConfig>,
    /// The audit log (`[audit]`), see `docs/policies.md`.
    pub audit: Option<crate::audit::AuditConfig>,
    /// Serve the web UI at `/ui/` (default true), see `docs/ui.md`.
    pub ui: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Request limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second each client IP may make on average (no limit when absent).
    pub rate_per_second: Option<f64>,
    /// Requests a client may make in a burst (default: one second's worth, at least 1).
    pub burst: Option<f64>,
    /// Seconds a client gets to send its request headers (default 30).
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may go without sending a byte before the
    /// request fails with 408 and the connection closes (default 60).
    pub body_idle_timeout_secs: Option<u64>,
    /// Connections held at once, in all (default 4096; keep it well under
    /// the process's open-file limit). Past it: 503 with `Retry-After`.
    pub max_connections: Option<usize>,
    /// Connections held at once from one client address (default 256).
    pub max_connections_per_client: Option<usize>,
    /// Extra connections, past the caps, that may only ask for `/livez`
    /// (default 32; plain-HTTP listeners only).
    pub reserved_livez_connections: Option<usize>,
    /// Bytes of manifest bodies held in memory at once, over all requests
    /// (default 64 MiB). A push whose next bytes wait more than a second for
    /// a share of it gets 503 with `Retry-After`.
    pub manifest_body_budget_bytes: Option<usize>,
    /// Seconds a manifest body may take to arrive whole (default 30); then 408.
    pub manifest_body_timeout_secs: Option<u64>,
    /// Free bytes on a local store's filesystem under which new uploads get
    /// 507 (default: 1 GiB or 5% of the filesystem, whichever is smaller;
    /// 0 turns it off). See [`crate::faults`].
    pub free_space_reserve_bytes: Option<u64>,
}

impl LimitsConfig {
    /// The header read timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.unwrap_or(30).max(1))
    }

    /// The longest pause allowed inside a request body.
    pub fn body_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.body_idle_timeout_secs.unwrap_or(60).max(1))
    }

    /// The connection caps: in all, per client, reserved for `/livez`.
    pub fn connections(&self) -> (usize, usize, usize) {
        (
            self.max_connections.unwrap_or(4096).max(1),
            self.max_connections_per_client.unwrap_or(256).max(1),
            self.reserved_livez_connections.unwrap_or(32),
        )
    }

    /// The byte budget of manifest bodies in memory.
    pub fn manifest_body_budget(&self) -> usize {
        self.manifest_body_budget_bytes
            .unwrap_or(64 * 1024 * 1024)
            .max(1)
    }

    /// How long a manifest body may take to arrive.
    pub fn manifest_body_timeout(&self) -> Duration {
        Duration::from_secs(self.manifest_body_timeout_secs.unwrap_or(30).max(1))
    }
}

/// Garbage collection settings (`registry gc` and the schedule inside `serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Run GC inside `serve` every this many seconds (never when absent).
    pub interval_secs: Option<u64>,
    /// Blobs idle for less than this many seconds are kept.
    pub grace_secs: u64,
    /// Upload sessions idle for longer than this many seconds are purged.
    pub upload_max_age_secs: u64,
    /// Delete untagged, unreferenced manifests older than this many days (kept when absent).
    pub untagged_max_age_days: Option<u64>,
}

impl Default for GcConfig {
    fn default() -> GcConfig {
        GcConfig {
            interval_secs: None,
            grace_secs: 3600,
            upload_max_age_secs: 24 * 3600,
            untagged_max_age_days: None,
        }
    }
}

impl GcConfig {
    /// The store's GC options.
    pub fn options(&self, dry_run: bool) -> store::GcOptions {
        store::GcOptions {
            dry_run,
            grace: std::time::Duration::from_secs(self.grace_secs),
            upload_max_age: std::time::Duration::from_secs(self.upload_max_age_secs),
            untagged_max_age: self
                .untagged_max_age_days
                .map(|d| std::time::Duration::from_secs(d * 86400)),
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid default address"),
            data: PathBuf::from("./data"),
            storage: None,
            database: None,
            allow_sparse: false,
            tls: None,
            auth: None,
            gc: GcConfig::default(),
            limits: LimitsConfig::default(),
            log_format: LogFormat::Text,
            trusted_proxies: Vec::new(),
            upstreams: Vec::new(),
            immutable: Vec::new(),
            retention: Vec::new(),
            quotas: Vec::new(),
            webhooks: Vec::new(),
            audit: None,
            ui: true,
        }
    }
}

/// Certificate and key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Who may do what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// htpasswd file with bcrypt entries.
    pub htpasswd: Option<PathBuf>,
    /// The `service` named in challenges and tokens.
    pub service: String,
    /// Token endpoint URL for challenges; by default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    /// Token lifetime in seconds.
    pub token_ttl: u64,
    /// Groups: name to member users.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Permission rules. With none, every user in the htpasswd file may do everything.
    pub rules: Vec<Rule>,
    /// Failed logins allowed in a burst, per user name and per client
    /// address; past it, 429 `TOOMANYREQUESTS` without checking the password.
    pub failed_login_burst: u32,
    /// Failed logins allowed per minute on average, per user and per address.
    pub failed_logins_per_minute: f64,
    /// Serve `/metrics` to anonymous clients (by default it takes a login).
    pub metrics_anonymous: bool,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            htpasswd: None,
            service: "strata".to_owned(),
            realm: None,
            token_ttl: 300,
            groups: Default::default(),
            rules: Vec::new(),
            failed_login_burst: 10,
            failed_logins_per_minute: 6.0,
            metrics_anonymous: false,
        }
    }
}

/// One grant: these principals may do these actions on matching repositories.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Repository globs: `*` stays within one path component, `**` crosses them.
    pub repositories: Vec<String>,
    /// Users granted.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups granted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether anonymous clients are granted too.
    #[serde(default)]
    pub anonymous: bool,
    /// Any of `pull`, `push`, `delete`, or `*`.
    pub actions: Vec<String>,
}

impl Config {
    /// Read a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> crate::startup::Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| Error::ConfigInvalid {
            path: path.to_owned(),
            source,
        })
    }

    /// For maintenance commands (`gc`, `fsck`): the data directory must
    /// exist when the store keeps anything in it (storage or database left
    /// to their defaults), so a typo is refused instead of creating it.
    pub fn require_data_dir(&self) -> Result<(), Error> {
        if (self.storage.is_none() || self.database.is_none()) && !self.data.is_dir() {
            return Err(Error::NoDataDir {
                path: self.data.clone(),
            });
        }
        Ok(())
    }

    /// The store settings this configuration implies.
    pub fn store(&self) -> StoreConfig {
        let mut store = StoreConfig::local(&self.data);
        if let Some(s) = &self.storage {
            store.storage = s.clone();
        }
        if let Some(d) = &self.database {
            store.database = d.clone();
        }
        store.allow_sparse = self.allow_sparse;
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let c: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:6000"
            data = "/srv/strata"
            [tls]
            cert = "c.pem"
            key = "k.pem"
            [auth]
            htpasswd = "users"
            [auth.groups]
            devs = ["alice"]
            [[auth.rules]]
            repositories = ["team/**"]
            groups = ["devs"]
            actions = ["pull", "push"]
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 6000);
        let auth = c.auth.unwrap();
        assert_eq!(auth.token_ttl, 300);
        assert_eq!(auth.rules[0].groups, ["devs"]);
    }

    #[test]
    fn parses_upstream_tables() {
        let c: Config = toml::from_str(
            r#"
            [[upstream]]
            name = "hub"
            url = "https://registry-1.docker.io"
            registry = "docker.io"
            default = true
            tag_ttl = "10m"
            [[upstream]]
            name = "ghcr"
            url = "https://ghcr.io"
            "#,
        )
        .unwrap();
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.upstreams[0].tag_ttl(), Duration::from_secs(600));
        assert!(c.upstreams[0].default && !c.upstreams[1].default);
        assert!(toml::from_str::<Config>(
            "[[upstream]]\nname = \"a\"\nurl = \"http://h\"\ntag_ttl = \"5y\""
        )
        .is_err());
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
