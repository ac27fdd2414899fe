//! Retention, the store's side of it; the registry decides what goes.
//!
//! - Mirrored content by last pull: the registry records when each mirrored
//!   repository was pulled ([`Store::record_pulls`], in batches), and
//!   [`Store::expire_unpulled`] deletes the manifests and tags of those
//!   under a prefix not pulled for a while.
//! - `[[retention]]` rules: the registry records manifest pulls
//!   ([`Store::record_manifest_pulls`], in batches), reads a repository's
//!   [`RetentionFacts`], judges them, and deletes what its rules let go
//!   with [`Store::untag_if_unchanged`] and [`Store::delete_unkept_manifest`],
//!   which re-check inside their transaction that nothing changed or keeps
//!   it meanwhile, under the cluster-wide [`RetentionLock`].
//!
//! Blobs of deleted manifests go the way of any unreferenced blob: the next
//! GC sweeps them after the grace period, unless another repository still
//! references them.

use std::time::Duration;

use crate::meta::{now, GcLock};
use crate::{Digest, Effects, RepoName, Result, Store};

pub use crate::meta::{ManifestFact, RetentionFacts, TagFact};

/// The cluster-wide retention lock, held until [`RetentionLock::release`]:
/// one retention pass at a time over every replica sharing the database.
pub struct RetentionLock(GcLock);

impl RetentionLock {
    /// Release the lock.
    pub async fn release(self) -> Result<()> {
        self.0.release().await
    }
}

impl Store {
    /// Take the retention lock; `None` when another replica holds it.
    pub async fn try_retention_lock(&self) -> Result<Option<RetentionLock>> {
        Ok(self.meta.try_retention_lock().await?.map(RetentionLock))
    }

    /// A repository's tags, manifests and manifest links, as retention judges them.
    pub async fn retention_facts(&self, repo: &RepoName) -> Result<RetentionFacts> {
        self.meta.retention_facts(repo).await
    }

    /// Delete the tag of `fact` if it still points to the same manifest and
    /// was not pushed again since (a locked tag is refused); the events of
    /// `effects` commit with it. Whether it went.
    pub async fn untag_if_unchanged(
        &self,
        repo: &RepoName,
        fact: &TagFact,
        effects: Effects<'_>,
    ) -> Result<bool> {
        self.meta.untag_if_unchanged(repo, fact, effects).await
    }

    /// Delete a manifest if no tag, no index and no subject keeps it (checked
    /// in the delete itself); the events of `effects` commit with it.
    /// Whether it went.
    pub async fn delete_unkept_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        effects: Effects<'_>,
    ) -> Result<bool> {
        self.meta
            .delete_unkept_manifest(repo, digest, effects)
            .await
    }

    /// Record last-pull times of manifests (seconds since the epoch), one
    /// transaction for the whole batch; a recorded time never moves back.
    pub async fn record_manifest_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        self.meta.record_manifest_pulls(pulls).await
    }

    /// Forget the recorded pulls of manifests deleted since; how many.
    pub async fn forget_stale_pulls(&self) -> Result<u64> {
        self.meta.forget_stale_pulls().await
    }

    /// Record last-pull times (seconds since the epoch) of mirrored
    /// repositories, one transaction for the whole batch.
    pub async fn record_pulls(&self, pulls: &[(RepoName, i64)]) -> Result<()> {
        self.meta.record_pulls(pulls).await
    }

    /// The recorded last pull of `repo` (seconds since the epoch).
    pub async fn last_pull(&self, repo: &RepoName) -> Result<Option<i64>> {
        self.meta.last_pull(repo).await
    }

    /// Delete every manifest (and so every tag) of the repositories under
    /// `prefix/` whose recorded last pull is older than `keep_for`; with
    /// `dry_run`, only list them. Repositories with no recorded pull are
    /// kept. Returns the manifests deleted (or that would be). Runs under
    /// the GC lock; `None` when another replica holds it.
    pub async fn expire_unpulled(
        &self,
        prefix: &str,
        keep_for: Duration,
        dry_run: bool,
    ) -> Result<Option<Vec<(String, Digest)>>> {
        let Some(lock) = self.meta.try_gc_lock().await? else {
            return Ok(None);
        };
        let result = self.expire_locked(prefix, keep_for, dry_run).await;
        lock.release().await?;
        result.map(Some)
    }

    async fn expire_locked(
        &self,
        prefix: &str,
        keep_for: Duration,
        dry_run: bool,
    ) -> Result<Vec<(String, Digest)>> {
        let cutoff = now() - i64::try_from(keep_for.as_secs()).unwrap_or(i64::MAX);
        let mut deleted = Vec::new();
        for repo in self.meta.unpulled_repos(prefix, cutoff).await? {
            let name: RepoName = repo.parse()?;
            for digest in self.meta.repo_manifests(&name).await? {
                if !dry_run {
                    self.meta
                        .delete_manifest(&name, &digest, &[], crate::Effects::default())
                        .await?;
                }
                deleted.push((repo.clone(), digest));
            }
            if !dry_run {
                self.meta.forget_pull(&repo).await?;
            }
        }
        Ok(deleted)
    }
}
