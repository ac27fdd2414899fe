//! Retention of mirrored content by last pull: the registry records when
//! each mirrored repository was pulled ([`Store::record_pulls`], in
//! batches), and [`Store::expire_unpulled`] deletes the manifests and tags
//! of those under a prefix not pulled for a while. Their blobs then go the
//! way of any unreferenced blob: the next GC sweeps them after the grace
//! period, unless another repository still references them.

use std::time::Duration;

use crate::meta::now;
use crate::{Digest, RepoName, Result, Store};

impl Store {
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
                        .delete_manifest(&name, &digest, crate::Effects::default())
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
