//! Quotas: byte budgets, each shared by a set of repositories.
//!
//! A [`Quota`] names its repositories by a literal prefix (for the query)
//! and a predicate (for the rest of the caller's glob); its usage is the
//! size of every distinct blob and manifest those repositories hold, so a
//! blob counts once per quota however many of them hold it. Usage is read
//! from the same rows GC marks from (`repo_blobs`, `manifests`), so it is
//! exact after deletes and GC, with nothing to recount.
//!
//! The store enforces the budgets itself, inside the write transaction of
//! every write that adds bytes to a repository (upload finish, mount,
//! manifest push): a write that would take a quota past its limit fails
//! with [`crate::Error::QuotaExceeded`] and changes nothing. On PostgreSQL
//! each quota's check holds a transaction-scoped advisory lock, so two
//! replicas' concurrent pushes cannot both slip under the limit.

use std::sync::Arc;

use crate::meta::NewEvent;
use crate::{Digest, RepoName, Result, Store};

/// Tells whether a repository name belongs to a quota.
pub type RepoPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Makes the outbox events of a warning threshold crossed by a write.
pub type WarningEvents = Arc<dyn Fn(&Crossing) -> Vec<NewEvent> + Send + Sync>;

/// One byte budget.
#[derive(Clone)]
pub struct Quota {
    /// Its name in messages, metrics and reports (the configured glob).
    pub name: String,
    /// A literal prefix every covered repository name starts with ("" for any).
    pub prefix: String,
    /// Whether a repository (already known to start with `prefix`) is covered.
    pub covers: RepoPredicate,
    /// The budget, in bytes.
    pub max_bytes: u64,
    /// Usage at or above which a write emits [`Quota::on_warning`]'s events.
    pub warn_bytes: Option<u64>,
    /// The events of a write that takes usage from under `warn_bytes` to at
    /// or above it, committed with that write.
    pub on_warning: Option<WarningEvents>,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("warn_bytes", &self.warn_bytes)
            .finish_non_exhaustive()
    }
}

impl Quota {
    /// Whether `repo` counts against this quota.
    pub fn covers_repo(&self, repo: &str) -> bool {
        repo.starts_with(&self.prefix) && (self.covers)(repo)
    }
}

/// A write that took a quota's usage over its warning threshold.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// The quota.
    pub quota: String,
    /// The repository written to.
    pub repo: String,
    /// Usage after the write.
    pub used: u64,
    /// The budget.
    pub limit: u64,
}

/// What a quota's repositories hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Distinct bytes (what counts against the budget).
    pub used: u64,
    /// Bytes counted once per repository holding them.
    pub logical: u64,
    /// Each covered repository and the bytes it holds, by name.
    pub repos: Vec<(String, u64)>,
}

impl Usage {
    /// Bytes deduplication saves: `logical - used`.
    pub fn saving(&self) -> u64 {
        self.logical.saturating_sub(self.used)
    }
}

impl Store {
    /// Enforce these budgets from now on (replacing any earlier ones).
    pub fn set_quotas(&self, quotas: Vec<Quota>) {
        *self.quotas.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(quotas);
    }

    /// The budgets `repo` counts against, in configuration order.
    pub(crate) fn quotas_for(&self, repo: &RepoName) -> Vec<Quota> {
        let all = self
            .quotas
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        all.iter()
            .filter(|q| q.covers_repo(repo.as_str()))
            .cloned()
            .collect()
    }

    /// Refuse early, outside any transaction, a blob that would take one
    /// of `quotas` over budget.
    pub(crate) async fn precheck(
        &self,
        quotas: &[Quota],
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let digest = digest.to_string();
        for quota in quotas {
            let rows = self.meta.holdings(&quota.prefix).await?;
            crate::meta::quota::admission(quota, &rows, &digest, size)?;
        }
        Ok(())
    }

    /// What `quota`'s repositories hold now.
    pub async fn usage(&self, quota: &Quota) -> Result<Usage> {
        let rows = self.meta.holdings(&quota.prefix).await?;
        Ok(crate::meta::quota::tally(quota, &rows))
    }
}
