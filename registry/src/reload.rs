//! The parts of the configuration that a running server swaps on SIGHUP,
//! and the reload itself.
//!
//! Reloaded (safe to swap between two requests; each request takes one
//! [`Live`] at its start and keeps it to its end):
//!
//! - `[auth]`: the htpasswd file's users, groups, rules, realm, service,
//!   token TTL, failed-login limits, `metrics_anonymous`; auth turned on or
//!   off. The cache of verified logins and the failed-login counts start
//!   afresh, so a removed user or a changed password stops working at once;
//! - `trusted_proxies`;
//! - `[limits] rate_per_second` and `burst` (the buckets start full);
//! - `[tls] cert` and `key`, when the server started with TLS: the files
//!   are read again (a renewed certificate), new connections get them;
//! - `[[retention]]`: the schedule reads the rules in force at each tick
//!   (a changed rule's schedule starts again from the reload).
//!
//! Everything else is read at start only (listen address, data, storage,
//! database, `allow_sparse`, `[gc]`, `[[upstream]]`, the other `[limits]`,
//! `log_format`, turning TLS on or off): a reload that changes them says so
//! in a warning and keeps the running values until a restart.
//!
//! A reload is all or nothing: a config that does not load or build (bad
//! TOML, unreadable htpasswd, bad CIDR, bad certificate) is logged as an
//! error and the old one stays in force.

use std::sync::{Arc, RwLock};

use axum_server::tls_rustls::RustlsConfig;
use store::Store;

use crate::auth::{rand_bytes, Auth};
use crate::config::Config;
use crate::forwarded::TrustedProxies;
use crate::limits::RateLimiter;
use crate::startup::{Error, Result};

/// What a reload swaps: built from a [`Config`], used by the middleware and
/// the routes through [`LiveCell::get`].
pub struct Live {
    /// Access control; `None` serves everyone.
    pub auth: Option<Auth>,
    /// Per-client rate limit, when configured.
    pub limiter: Option<RateLimiter>,
    /// Reverse proxies whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// The `[[retention]]` rules, checked.
    pub retention: Vec<crate::policy::retention::RetentionRule>,
}

impl Live {
    /// Load users, rules and limits from `config`. The token signing key
    /// lives in the shared database, so every replica (and every restart and
    /// reload) accepts the same tokens.
    pub async fn build(config: &Config, store: &Store) -> Result<Live> {
        let auth = match &config.auth {
            Some(a) => {
                let key = store
                    .secret("token-hmac-key", &hex::encode(rand_bytes()))
                    .await?;
                Some(Auth::new(a, key.into_bytes())?)
            }
            None => None,
        };
        Ok(Live {
            auth,
            limiter: config
                .limits
                .rate_per_second
                .map(|rate| RateLimiter::new(rate, config.limits.burst.unwrap_or(rate))),
            proxies: TrustedProxies::parse(&config.trusted_proxies).map_err(Error::Config)?,
            retention: crate::policy::retention::RetentionRule::all(&config.retention)
                .map_err(Error::Config)?,
        })
    }
}

/// The [`Live`] in force; a reload replaces it whole.
pub struct LiveCell(RwLock<Arc<Live>>);

impl LiveCell {
    /// Start with `live`.
    pub fn new(live: Live) -> LiveCell {
        LiveCell(RwLock::new(Arc::new(live)))
    }

    /// The one in force now.
    pub fn get(&self) -> Arc<Live> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, live: Live) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(live);
    }
}

/// Reads the configuration again as the server was started: the same file,
/// with the same flags and environment on top (the binary's closure).
pub type Loader = Box<dyn Fn() -> std::result::Result<Config, String> + Send + Sync>;

/// One reload: load, build, then swap. Returns the config now in force
/// (`running` again when the reload failed).
pub async fn reload(
    live: &LiveCell,
    store: &Store,
    tls: Option<&RustlsConfig>,
    running: Config,
    loader: &Loader,
) -> Config {
    match try_reload(live, store, tls, &running, loader).await {
        Ok(new) => {
            let kept = restart_only(&running, &new);
            if kept.is_empty() {
                tracing::info!("configuration reloaded");
            } else {
                tracing::warn!(
                    needs_restart = %kept.join(", "),
                    "configuration reloaded; these settings changed but only take effect on a restart"
                );
            }
            // The restart-only settings stay as they run.
            Config {
                auth: new.auth,
                trusted_proxies: new.trusted_proxies,
                retention: new.retention,
                // New certificate paths were loaded; TLS on or off was not.
                tls: match (&running.tls, new.tls) {
                    (Some(_), Some(files)) => Some(files),
                    (old, _) => old.clone(),
                },
                limits: crate::config::LimitsConfig {
                    rate_per_second: new.limits.rate_per_second,
                    burst: new.limits.burst,
                    ..running.limits.clone()
                },
                ..running
            }
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                "configuration reload failed; the old configuration stays in force"
            );
            running
        }
    }
}

async fn try_reload(
    live: &LiveCell,
    store: &Store,
    tls: Option<&RustlsConfig>,
    running: &Config,
    loader: &Loader,
) -> std::result::Result<Config, String> {
    let new = loader()?;
    let built = Live::build(&new, store)
        .await
        .map_err(|e| error_chain(&e))?;
    if let (Some(rustls), Some(files)) = (tls, new.tls.as_ref().filter(|_| running.tls.is_some())) {
        rustls
            .reload_from_pem_file(&files.cert, &files.key)
            .await
            .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    }
    live.set(built);
    Ok(new)
}

/// The names of the settings that differ between `old` and `new` but are
/// read at start only.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let limits = |c: &Config| crate::config::LimitsConfig {
        rate_per_second: None,
        burst: None,
        ..c.limits.clone()
    };
    [
        ("listen", differs(&old.listen, &new.listen)),
        ("data", differs(&old.data, &new.data)),
        ("storage", differs(&old.storage, &new.storage)),
        ("database", differs(&old.database, &new.database)),
        ("allow_sparse", old.allow_sparse != new.allow_sparse),
        ("tls on/off", old.tls.is_some() != new.tls.is_some()),
        ("gc", differs(&old.gc, &new.gc)),
        ("limits", differs(&limits(old), &limits(new))),
        ("log_format", old.log_format != new.log_format),
        ("upstream", differs(&old.upstreams, &new.upstreams)),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
