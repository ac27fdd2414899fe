//! Events for webhooks (`[[webhook]]`): CloudEvents 1.0 JSON, put in the
//! store's outbox in the same transaction as the change they describe, then
//! delivered by a background task with retries.
//!
//! ```text
//! events (Events: the webhooks, which events each wants; Actor; Kind)
//!  ├── cloudevent  the JSON of one event, its id, the HMAC-SHA256 signature
//!  └── webhook     the delivery task: claim, POST, retry with backoff, dead-letter; metrics
//! ```
//! `routes` asks [`Events::build`] for the outbox rows of a change and hands
//! them to the store's write ([`store::Effects`]); `server` spawns
//! [`webhook::deliver`]. Uses only `store`, `auth::glob_match`, `rfc3339`
//! and the duration parser of `mirror::config`.

pub mod cloudevent;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use store::NewEvent;

pub use cloudevent::EventData;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A manifest was pushed.
    Push,
    /// A manifest or tag was deleted.
    Delete,
    /// A manifest was pulled.
    Pull,
    /// A blob was mounted from another repository.
    Mount,
    /// `[[retention]]` deleted a tag or a manifest.
    Retention,
    /// A push took a quota's usage over its `warn_percent`.
    QuotaWarning,
}

impl Kind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Kind; 6] = [
        Kind::Push,
        Kind::Delete,
        Kind::Pull,
        Kind::Mount,
        Kind::Retention,
        Kind::QuotaWarning,
    ];

    /// Its name in `events = [...]` and in the CloudEvents type.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Delete => "delete",
            Kind::Pull => "pull",
            Kind::Mount => "mount",
            Kind::Retention => "retention",
            Kind::QuotaWarning => "quota_warning",
        }
    }
}

/// Who made a change, and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The user name ("" for anonymous).
    pub user: String,
    /// The client's address.
    pub client: Option<std::net::IpAddr>,
    /// The host the client addressed (the event's `source`).
    pub host: String,
}

/// One `[[webhook]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where events are POSTed.
    pub url: String,
    /// Its name in the outbox and the metrics (default: the URL). Events
    /// waiting for a webhook go to the webhook of that name after a restart.
    pub name: Option<String>,
    /// Which events (`push`, `delete`, `pull`, `mount`, `retention`,
    /// `quota_warning`); default all but `pull`.
    pub events: Option<Vec<String>>,
    /// Repository glob (default `**`).
    #[serde(default = "all_repositories")]
    pub repositories: String,
    /// Only manifests of these media types (default: any).
    #[serde(default)]
    pub media_types: Vec<String>,
    /// File holding the HMAC-SHA256 key of the signature header.
    pub secret_file: Option<PathBuf>,
    /// Time a delivery may take (default `10s`).
    pub timeout: Option<String>,
    /// Deliveries tried before an event goes to the dead-letter list (default 10).
    pub max_attempts: Option<u32>,
    /// Wait after the first failure, doubled after each next one (default `1s`; `ms` allowed).
    pub backoff: Option<String>,
    /// Longest wait between two tries (default `5m`).
    pub max_backoff: Option<String>,
}

fn all_repositories() -> String {
    "**".to_owned()
}

/// A webhook, checked and with its secret read.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its name (the outbox's target).
    pub name: String,
    /// Where events go.
    pub url: String,
    kinds: Vec<Kind>,
    repositories: String,
    media_types: Vec<String>,
    /// The signing key, when there is one.
    pub secret: Option<Vec<u8>>,
    /// Time a delivery may take.
    pub timeout: Duration,
    /// Tries before the dead-letter list.
    pub max_attempts: u32,
    /// First retry wait.
    pub backoff: Duration,
    /// Longest retry wait.
    pub max_backoff: Duration,
}

/// `"250ms"` or what [`crate::mirror::config::parse_duration`] reads.
fn duration(s: Option<&str>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => match s.trim().strip_suffix("ms") {
            Some(n) => n
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| format!("{s:?}: expected a number of ms")),
            None => crate::mirror::config::parse_duration(s),
        },
    }
}

impl Webhook {
    fn from_config(c: &WebhookConfig) -> Result<Webhook, String> {
        let name = c.name.clone().unwrap_or_else(|| c.url.clone());
        let err = |e: String| format!("[[webhook]] {name}: {e}");
        if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
            return Err(err(format!("url {:?} is not http(s)://", c.url)));
        }
        let kinds = match &c.events {
            None => Kind::ALL.into_iter().filter(|k| *k != Kind::Pull).collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    Kind::ALL
                        .into_iter()
                        .find(|k| k.name() == n)
                        .ok_or_else(|| {
                            let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                            err(format!("unknown event {n:?} ({})", known.join(", ")))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let secret = match &c.secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(format!("secret_file {}: {e}", path.display())))?;
                Some(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            }
            None => None,
        };
        Ok(Webhook {
            url: c.url.clone(),
            kinds,
            repositories: c.repositories.clone(),
            media_types: c.media_types.clone(),
            secret,
            timeout: duration(c.timeout.as_deref(), Duration::from_secs(10)).map_err(err)?,
            max_attempts: c.max_attempts.unwrap_or(10).max(1),
            backoff: duration(c.backoff.as_deref(), Duration::from_secs(1)).map_err(err)?,
            max_backoff: duration(c.max_backoff.as_deref(), Duration::from_secs(300))
                .map_err(err)?,
            name,
        })
    }

    /// Whether this webhook wants an event of `kind` about `data`.
    fn wants(&self, kind: Kind, data: &EventData) -> bool {
        self.kinds.contains(&kind)
            && crate::auth::glob_match(&self.repositories, &data.repository)
            && (self.media_types.is_empty()
                || data
                    .media_type
                    .as_ref()
                    .is_some_and(|m| self.media_types.contains(m)))
    }

    /// The wait before try `attempt + 1` after `attempt` failures (1, 2, ...).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// The configured webhooks, the delivery counters and the wake-up of the
/// delivery task; cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    webhooks: Vec<Webhook>,
    wake: tokio::sync::Notify,
    metrics: webhook::Counters,
}

impl Events {
    /// The webhooks of the configuration, checked (secrets read).
    pub fn new(configs: &[WebhookConfig]) -> Result<Events, String> {
        let webhooks = configs
            .iter()
            .map(Webhook::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&str> = webhooks.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("[[webhook]]: two webhooks named {:?}", w[0]));
        }
        Ok(Events {
            inner: Arc::new(Inner {
                webhooks,
                ..Inner::default()
            }),
        })
    }

    /// Whether any webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.inner.webhooks.is_empty()
    }

    /// Whether some webhook wants events of `kind` at all.
    pub fn wants(&self, kind: Kind) -> bool {
        self.inner.webhooks.iter().any(|w| w.kinds.contains(&kind))
    }

    /// The webhook called `name`.
    pub fn webhook(&self, name: &str) -> Option<&Webhook> {
        self.inner.webhooks.iter().find(|w| w.name == name)
    }

    /// The outbox rows of one event: one per webhook that wants it, all
    /// with the same id and body.
    pub fn build(&self, kind: Kind, actor: &Actor, data: EventData) -> Vec<NewEvent> {
        let targets: Vec<&Webhook> = self
            .inner
            .webhooks
            .iter()
            .filter(|w| w.wants(kind, &data))
            .collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let (id, payload) = cloudevent::render(kind, actor, &data);
        targets
            .into_iter()
            .map(|w| NewEvent {
                target: w.name.clone(),
                repo: data.repository.clone(),
                event_id: id.clone(),
                payload: payload.clone(),
            })
            .collect()
    }

    /// Tell the delivery task that new events are in the outbox.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The delivery counters and outbox gauges, in the text format of `/metrics`.
    pub fn render_metrics(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        self.inner.metrics.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(toml_text: &str) -> Result<Webhook, String> {
        let c: WebhookConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Webhook::from_config(&c)
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let w = hook("url = \"http://h/\"\nbackoff = \"100ms\"\nmax_backoff = \"1s\"").unwrap();
        let ms: Vec<u128> = (1..=6).map(|a| w.retry_delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn filters_pick_webhooks() {
        let w =
            hook("url = \"http://h/\"\nrepositories = \"prod/**\"\nevents = [\"push\"]").unwrap();
        let data = |repo: &str| EventData {
            repository: repo.to_owned(),
            ..EventData::default()
        };
        assert!(w.wants(Kind::Push, &data("prod/a/b")));
        assert!(!w.wants(Kind::Delete, &data("prod/a")));
        assert!(!w.wants(Kind::Push, &data("dev/a")));
        assert!(hook("url = \"http://h/\"\nevents = [\"pushed\"]").is_err());
        assert!(hook("url = \"ftp://h/\"").is_err());
    }
}
