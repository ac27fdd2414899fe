//! The pull-through mirror: repositories whose content comes from an
//! upstream registry on demand, cached in the same content-addressed store
//! as pushed images (a layer both mirrored and pushed is stored once).
//!
//! ```text
//! mirror (Mirror: the upstreams, which request goes where, tag freshness, metrics)
//!  ├── manifests  a manifest through the mirror: tag TTL, HEAD first, stale on outage
//!  ├── blobs      a blob through the mirror: tee to the client while stored, verified
//!  ├── sync       `registry sync` and `sync_interval`: pre-fetch what the filters select
//!  ├── retention  `keep_for`: last pulls noted in memory, flushed in batches; GC's expiry
//!  ├── tags       the tag list: the upstream's (cached for tag_ttl) ∪ the local tags
//!  ├── flight     single flight: one upstream fetch per missing blob or manifest
//!  ├── client     the HTTP client of one upstream: Basic / Bearer token dance, bounds
//!  ├── config     the `[[upstream]]` tables and `--upstream NAME=URL`
//!  └── error      an upstream's failures, and which allow serving stale
//! ```
//!
//! A request reaches an upstream three ways, all mapped onto the same
//! local repository `<upstream name>/<repository>` by [`Mirror::resolve`]:
//! the path prefix (`/v2/hub/library/alpine/...`), containerd's
//! `?ns=docker.io` (the upstream whose `registry` is that name), and the
//! `default` upstream for names that do not exist locally (Docker's
//! `registry-mirrors`, which asks for `/v2/library/alpine/...`). The
//! upstream's URL comes only from the configuration: a client chooses among
//! configured upstreams, never a host.
//!
//! The mirror uses only `store::Store` (and, for `sync`'s repository globs,
//! `auth::glob_match`); `routes` calls it and answers the
//! client from the store once it returns.

pub mod blobs;
pub mod client;
pub mod config;
pub mod error;
pub mod flight;
pub mod manifests;
pub mod retention;
pub mod sync;
pub mod tags;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{RepoName, Store};

use client::UpstreamClient;
use config::UpstreamConfig;
pub use error::{UpstreamError, UpstreamResult};

/// What a mirror request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The upstream's failure (no cached copy to serve instead).
    #[error("upstream {upstream}: {source}")]
    Upstream {
        /// The upstream's name.
        upstream: String,
        /// What went wrong.
        #[source]
        source: UpstreamError,
    },
    /// The store's.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// One of the counters of [`UpstreamMetrics`].
type Counter = fn(&UpstreamMetrics) -> &AtomicU64;

/// Per-upstream counters, for `/metrics`.
#[derive(Default)]
pub struct UpstreamMetrics {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    stale: AtomicU64,
}

/// One configured upstream.
pub struct Upstream {
    /// Its name: the path prefix of its repositories.
    pub name: String,
    registry: Option<String>,
    default: bool,
    tag_ttl: Duration,
    keep_for: Option<Duration>,
    client: UpstreamClient,
    metrics: UpstreamMetrics,
    sync: SyncFilter,
}

/// What `registry sync` pre-fetches from one upstream.
struct SyncFilter {
    repositories: Vec<String>,
    tags: Option<regex_automata::meta::Regex>,
    exclude: Vec<String>,
    /// Of an index, the platforms fetched (all when empty).
    platforms: Vec<store::manifest::Platform>,
    interval: Option<Duration>,
}

/// A request mapped onto an upstream.
#[derive(Clone)]
pub struct Target {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The local repository holding the mirrored copy: `<name>/<remote>`.
    pub local: RepoName,
    /// The repository's name upstream.
    pub remote: String,
}

/// All upstreams, and the state shared by their requests.
#[derive(Default)]
pub struct Mirror {
    upstreams: Vec<Arc<Upstream>>,
    flights: flight::Flights,
    /// When each mirrored tag was last found current upstream.
    checked: Mutex<HashMap<(RepoName, String), Instant>>,
    /// Last pulls not yet written to the store (see [`retention`]).
    pulls: Mutex<HashMap<RepoName, i64>>,
    /// The upstream's tag list of each mirrored repository, and when it was read.
    tag_lists: tags::TagLists,
}

impl Mirror {
    /// The mirror of these upstreams (none: every repository is local).
    pub fn new(configs: &[UpstreamConfig]) -> Result<Mirror, String> {
        let mut upstreams = Vec::new();
        for c in configs {
            c.validate()?;
            if upstreams.iter().any(|u: &Arc<Upstream>| u.name == c.name) {
                return Err(format!("upstream {} is configured twice", c.name));
            }
            upstreams.push(Arc::new(Upstream {
                name: c.name.clone(),
                registry: c.registry.clone(),
                default: c.default,
                tag_ttl: c.tag_ttl(),
                keep_for: c.keep_for,
                client: UpstreamClient::new(c)?,
                metrics: UpstreamMetrics::default(),
                sync: SyncFilter {
                    repositories: c.repositories.clone(),
                    tags: match &c.tags {
                        Some(t) => Some(
                            regex_automata::meta::Regex::new(t)
                                .map_err(|e| format!("upstream {}: tags: {e}", c.name))?,
                        ),
                        None => None,
                    },
                    exclude: c.exclude.clone(),
                    platforms: c.platforms()?,
                    interval: c.sync_interval,
                },
            }));
        }
        if upstreams.iter().filter(|u| u.default).count() > 1 {
            return Err("only one upstream may be default = true".into());
        }
        Ok(Mirror {
            upstreams,
            ..Mirror::default()
        })
    }

    /// The upstreams synced on a schedule, with their interval.
    pub fn scheduled(&self) -> Vec<(Arc<Upstream>, Duration)> {
        self.upstreams
            .iter()
            .filter_map(|u| u.sync.interval.map(|i| (u.clone(), i)))
            .collect()
    }

    /// Whether any upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Map a request for `repo` (with containerd's `ns`, when sent) onto an
    /// upstream, or `None` for a local repository. The default upstream
    /// takes only reads (`read`): a push creates a local repository.
    pub async fn resolve(
        &self,
        store: &Store,
        repo: &RepoName,
        ns: Option<&str>,
        read: bool,
    ) -> Result<Option<Target>, store::Error> {
        if self.upstreams.is_empty() {
            return Ok(None);
        }
        if let Some(ns) = ns {
            if let Some(u) = self
                .upstreams
                .iter()
                .find(|u| u.registry.as_deref() == Some(ns))
            {
                return Ok(target(u, repo.as_str()));
            }
        }
        if let Some((first, rest)) = repo.as_str().split_once('/') {
            if let Some(u) = self.upstreams.iter().find(|u| u.name == first) {
                return Ok(target(u, rest));
            }
        }
        if let Some(u) = self.upstreams.iter().find(|u| u.default && read) {
            if !store.repo_exists(repo).await? {
                return Ok(target(u, repo.as_str()));
            }
        }
        Ok(None)
    }

    /// Whether `repo:tag` was found current upstream within its TTL.
    fn is_fresh(&self, t: &Target, tag: &str) -> bool {
        let checked = self.checked.lock().expect("checked lock");
        checked
            .get(&(t.local.clone(), tag.to_owned()))
            .is_some_and(|at| at.elapsed() < t.upstream.tag_ttl)
    }

    /// Record that `repo:tag` is current upstream now.
    fn mark_fresh(&self, t: &Target, tag: &str) {
        let mut checked = self.checked.lock().expect("checked lock");
        // Bounded: past 100k entries, the expired ones go.
        if checked.len() > 100_000 {
            checked.retain(|(repo, _), at| {
                let ttl = self
                    .upstreams
                    .iter()
                    .find(|u| repo.as_str().starts_with(&format!("{}/", u.name)))
                    .map_or(Duration::ZERO, |u| u.tag_ttl);
                at.elapsed() < ttl
            });
        }
        checked.insert((t.local.clone(), tag.to_owned()), Instant::now());
    }

    /// The per-upstream counters in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        if self.upstreams.is_empty() {
            return out;
        }
        let families: [(&str, &str, Counter); 5] = [
            ("hits", "Mirror requests served from the store.", |m| {
                &m.hits
            }),
            (
                "misses",
                "Mirror requests fetched from the upstream.",
                |m| &m.misses,
            ),
            ("errors", "Failed upstream requests.", |m| &m.errors),
            (
                "stale",
                "Cached copies served stale while the upstream failed.",
                |m| &m.stale,
            ),
            (
                "fetched_bytes",
                "Blob bytes fetched from the upstream.",
                |m| &m.bytes,
            ),
        ];
        for (name, help, field) in families {
            let _ = writeln!(out, "# HELP strata_mirror_{name}_total {help}");
            let _ = writeln!(out, "# TYPE strata_mirror_{name}_total counter");
            for u in &self.upstreams {
                let n = field(&u.metrics).load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "strata_mirror_{name}_total{{upstream=\"{}\"}} {n}",
                    u.name
                );
            }
        }
        out
    }
}

/// One upstream's counters since start, as the web UI's dashboard shows them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamStats {
    /// The upstream's name (its repositories' path prefix).
    pub name: String,
    /// Requests served from the store.
    pub hits: u64,
    /// Requests fetched from the upstream.
    pub misses: u64,
    /// Failed upstream requests.
    pub errors: u64,
    /// Cached copies served stale while the upstream failed.
    pub stale: u64,
    /// Blob bytes fetched from the upstream.
    pub fetched_bytes: u64,
}

impl Mirror {
    /// Each upstream's counters, in configuration order (none: no mirror).
    pub fn stats(&self) -> Vec<UpstreamStats> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        self.upstreams
            .iter()
            .map(|u| UpstreamStats {
                name: u.name.clone(),
                hits: load(&u.metrics.hits),
                misses: load(&u.metrics.misses),
                errors: load(&u.metrics.errors),
                stale: load(&u.metrics.stale),
                fetched_bytes: load(&u.metrics.bytes),
            })
            .collect()
    }
}

fn target(u: &Arc<Upstream>, remote: &str) -> Option<Target> {
    // Docker Hub's official images live under library/.
    let remote = if u.registry.as_deref() == Some("docker.io") && !remote.contains('/') {
        format!("library/{remote}")
    } else {
        remote.to_owned()
    };
    let local = format!("{}/{remote}", u.name).parse().ok()?;
    Some(Target {
        upstream: u.clone(),
        local,
        remote,
    })
}

impl Upstream {
    fn count(&self, field: Counter, n: u64) {
        field(&self.metrics).fetch_add(n, Ordering::Relaxed);
    }

    /// Count the failure and wrap it for the client.
    fn failed(&self, source: UpstreamError) -> MirrorError {
        self.count(|m| &m.errors, 1);
        MirrorError::Upstream {
            upstream: self.name.clone(),
            source,
        }
    }
}
