//! Carrying out `[[retention]]`: a pass over the repositories, the schedule
//! inside `serve`, the batched record of manifest pulls, and the counters.
//!
//! A pass ([`run`]) takes the store's cluster-wide retention lock (one
//! replica at a time; the others skip), then for each repository its first
//! covering rule judges the store's facts ([`super::retention::judge`]) and
//! the store deletes what goes, each delete re-checking in its transaction
//! that nothing changed or keeps it meanwhile, with its `retention` event
//! put in the outbox in that same transaction. A dry run only reports.
//!
//! Pulls: each GET of a manifest notes `(repo, digest)` in memory
//! ([`Pruner::pulled`]: one map insert, no I/O); [`Pruner::flush_pulls`]
//! writes the batch in one transaction, every [`FLUSH_INTERVAL`], before
//! each scheduled pass and at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use store::{Digest, Effects, RepoName, Store, Tag};

use super::retention::{judge, rule_for, RetentionRule};
use super::Policies;
use crate::events::{Actor, EventData, Events, Kind};

/// How often pulls noted in memory are written, and the schedule looks at the clock.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// One tag or manifest that went (or, in a dry run, would go).
#[derive(Debug, Clone, Serialize)]
pub struct Deletion {
    /// `tag` or `manifest`.
    pub kind: &'static str,
    /// The repository.
    pub repository: String,
    /// The tag, for a tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest (a tag's: the one it pointed to).
    pub digest: String,
    /// The rule that judged it.
    pub rule: String,
    /// Why nothing kept it.
    pub reason: String,
}

impl std::fmt::Display for Deletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "tag {}:{tag} ({})", self.repository, self.digest)?,
            None => write!(f, "manifest {}@{}", self.repository, self.digest)?,
        }
        write!(f, ": {}; {}", self.reason, self.rule)
    }
}

/// What a pass deleted (or would), and what it left because it changed meanwhile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Gone (or would go), in the order deleted.
    pub deleted: Vec<Deletion>,
    /// Judged to go, but pushed, pulled or referenced again before the delete.
    pub skipped: Vec<Deletion>,
}

impl Report {
    /// Tags and manifests deleted.
    pub fn counts(&self) -> (u64, u64) {
        let tags = self.deleted.iter().filter(|d| d.kind == "tag").count() as u64;
        (tags, self.deleted.len() as u64 - tags)
    }
}

/// What a pass runs with.
pub struct Pass<'a> {
    /// The rules, in file order.
    pub rules: &'a [RetentionRule],
    /// Only repositories judged by these rules (indexes into `rules`); all when `None`.
    pub only: Option<&'a [usize]>,
    /// The `[[immutable]]` rules: their tags never go.
    pub policies: &'a Policies,
    /// Where the `retention` events go.
    pub events: &'a Events,
    /// Who the events name.
    pub actor: &'a Actor,
    /// Report only.
    pub dry_run: bool,
}

/// One pass over every repository a rule covers. `None` when another
/// replica holds the retention lock (nothing was done).
pub async fn run(store: &Store, pass: &Pass<'_>) -> Result<Option<Report>, store::Error> {
    let Some(lock) = store.try_retention_lock().await? else {
        return Ok(None);
    };
    let result = run_locked(store, pass).await;
    lock.release().await?;
    result.map(Some)
}

async fn run_locked(store: &Store, pass: &Pass<'_>) -> Result<Report, store::Error> {
    let mut report = Report {
        dry_run: pass.dry_run,
        ..Report::default()
    };
    if !pass.dry_run {
        store.forget_stale_pulls().await?;
    }
    for name in store.repositories(None, u64::MAX).await? {
        let Some(index) = rule_for(pass.rules, &name) else {
            continue;
        };
        if pass.only.is_some_and(|only| !only.contains(&index)) {
            continue;
        }
        let repo: RepoName = name.parse()?;
        prune_repo(store, pass, &pass.rules[index], &repo, &mut report).await?;
    }
    Ok(report)
}

async fn prune_repo(
    store: &Store,
    pass: &Pass<'_>,
    rule: &RetentionRule,
    repo: &RepoName,
    report: &mut Report,
) -> Result<(), store::Error> {
    let facts = store.retention_facts(repo).await?;
    let policies = pass.policies;
    let immutable = |t: &str| policies.immutable_rule(repo.as_str(), t).is_some();
    let verdict = judge(rule, &facts, store::now(), &immutable);
    let locked = |t: &Tag| immutable(t.as_str());
    let label = rule.label();
    let manifest_of = |d: &Digest| facts.manifests.iter().find(|m| &m.digest == d);
    for (tag, reason) in &verdict.tags {
        let m = manifest_of(&tag.digest);
        let deletion = Deletion {
            kind: "tag",
            repository: repo.to_string(),
            tag: Some(tag.name.to_string()),
            digest: tag.digest.to_string(),
            rule: label.clone(),
            reason: reason.clone(),
        };
        if pass.dry_run {
            report.deleted.push(deletion);
            continue;
        }
        let events = event(pass, &deletion, m.map(|m| (m.media_type.clone(), m.size)));
        let effects = Effects {
            locked: policies
                .has_immutable(repo.as_str())
                .then_some(&locked as _),
            events: &events,
        };
        match store.untag_if_unchanged(repo, tag, effects).await {
            Ok(true) => report.deleted.push(deletion),
            Ok(false) | Err(store::Error::TagLocked { .. }) => report.skipped.push(deletion),
            Err(e) => return Err(e),
        }
    }
    for (m, reason) in &verdict.manifests {
        let deletion = Deletion {
            kind: "manifest",
            repository: repo.to_string(),
            tag: None,
            digest: m.digest.to_string(),
            rule: label.clone(),
            reason: reason.clone(),
        };
        if pass.dry_run {
            report.deleted.push(deletion);
            continue;
        }
        let events = event(pass, &deletion, Some((m.media_type.clone(), m.size)));
        let effects = Effects {
            locked: None,
            events: &events,
        };
        if store
            .delete_unkept_manifest(repo, &m.digest, effects)
            .await?
        {
            report.deleted.push(deletion);
        } else {
            report.skipped.push(deletion);
        }
    }
    Ok(())
}

/// The outbox rows of the `retention` event of one deletion.
fn event(pass: &Pass<'_>, d: &Deletion, manifest: Option<(String, u64)>) -> Vec<store::NewEvent> {
    let (media_type, size) = manifest.unzip();
    let data = EventData {
        repository: d.repository.clone(),
        tag: d.tag.clone(),
        digest: Some(d.digest.clone()),
        media_type,
        size,
        ..EventData::default()
    };
    pass.events.build(Kind::Retention, pass.actor, data)
}

/// The pulls noted since the last flush, and the counters of `/metrics`.
#[derive(Default)]
pub struct Pruner {
    pulls: Mutex<HashMap<(RepoName, Digest), i64>>,
    tags_deleted: AtomicU64,
    manifests_deleted: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
}

impl Pruner {
    /// Note that `repo@digest` was pulled now.
    pub fn pulled(&self, repo: &RepoName, digest: &Digest) {
        let now = store::now();
        let mut pulls = self.pulls.lock().expect("pulls lock");
        pulls.insert((repo.clone(), digest.clone()), now);
    }

    /// Write the pulls noted since the last flush (one transaction). On
    /// failure they are noted again, for the next flush.
    pub async fn flush_pulls(&self, store: &Store) -> Result<(), store::Error> {
        let batch: Vec<_> = {
            let mut pulls = self.pulls.lock().expect("pulls lock");
            pulls.drain().map(|((r, d), at)| (r, d, at)).collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.record_manifest_pulls(&batch).await {
            let mut pulls = self.pulls.lock().expect("pulls lock");
            for (repo, digest, at) in batch {
                let slot = pulls.entry((repo, digest)).or_insert(at);
                *slot = (*slot).max(at);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Count a finished pass.
    pub fn count(&self, report: &Report) {
        let (tags, manifests) = report.counts();
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.tags_deleted.fetch_add(tags, Ordering::Relaxed);
        self.manifests_deleted
            .fetch_add(manifests, Ordering::Relaxed);
    }

    /// The counters, in the text format of `/metrics`.
    pub fn render_metrics(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP strata_retention_deleted_total Tags and manifests deleted by [[retention]].\n\
             # TYPE strata_retention_deleted_total counter\n\
             strata_retention_deleted_total{{kind=\"tag\"}} {}\n\
             strata_retention_deleted_total{{kind=\"manifest\"}} {}\n\
             # HELP strata_retention_runs_total Scheduled retention passes finished.\n\
             # TYPE strata_retention_runs_total counter\n\
             strata_retention_runs_total {}\n\
             # HELP strata_retention_failures_total Scheduled retention passes that failed.\n\
             # TYPE strata_retention_failures_total counter\n\
             strata_retention_failures_total {}\n",
            get(&self.tags_deleted),
            get(&self.manifests_deleted),
            get(&self.runs),
            get(&self.failures),
        )
    }
}

/// Inside `serve`: write the pulls every [`FLUSH_INTERVAL`], and run each
/// rule with a `schedule` that often (first one period after the start, or
/// after a reload changed the rule). The rules are read from the live
/// configuration at each tick, so a SIGHUP's changes apply.
pub async fn schedule(state: Arc<crate::routes::AppState>, host: String) {
    let actor = Actor {
        user: "retention".to_owned(),
        client: None,
        host,
    };
    let mut last: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        if let Err(e) = state.pruner.flush_pulls(&state.store).await {
            tracing::warn!(error = %e, "writing manifest pull times failed");
        }
        let live = state.live.get();
        let now = Instant::now();
        let mut clocks = HashMap::new();
        let mut due = Vec::new();
        for (i, rule) in live.retention.iter().enumerate() {
            let Some(every) = rule.schedule else {
                continue;
            };
            let key = format!("{rule:?}");
            let since = *last.get(&key).unwrap_or(&now);
            if now.duration_since(since) >= every {
                due.push(i);
                clocks.insert(key, now);
            } else {
                clocks.insert(key, since);
            }
        }
        // Rules gone from the configuration forget their clocks.
        last = clocks;
        if due.is_empty() {
            continue;
        }
        let pass = Pass {
            rules: &live.retention,
            only: Some(&due),
            policies: &state.policy,
            events: &state.events,
            actor: &actor,
            dry_run: false,
        };
        match run(&state.store, &pass).await {
            Ok(Some(report)) => {
                state.pruner.count(&report);
                for d in &report.deleted {
                    tracing::info!("retention deleted {d}");
                }
                let (tags, manifests) = report.counts();
                tracing::info!(
                    tags,
                    manifests,
                    skipped = report.skipped.len(),
                    "retention run"
                );
                if !report.deleted.is_empty() {
                    state.events.wake();
                }
            }
            Ok(None) => tracing::info!("retention skipped: another replica holds the lock"),
            Err(e) => {
                state.pruner.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "retention failed");
            }
        }
    }
}
