//! `mirror_pulls`: when each mirrored repository was last pulled, written in
//! batches by the registry, read by GC's retention of mirrored content.

use sqlx::Row;

use super::{digest_col, Meta};
use crate::{Digest, RepoName, Result};

impl Meta {
    /// Record these last-pull times (seconds since the epoch), one
    /// transaction for the batch; a time never moves back.
    pub async fn record_pulls(&self, pulls: &[(RepoName, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (repo, at) in pulls {
            sqlx::query(
                "INSERT INTO mirror_pulls (repo, pulled_at) VALUES ($1, $2) \
                 ON CONFLICT (repo) DO UPDATE SET pulled_at = excluded.pulled_at \
                 WHERE mirror_pulls.pulled_at < excluded.pulled_at",
            )
            .bind(repo.as_str())
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last pull of `repo`, when one was recorded.
    pub async fn last_pull(&self, repo: &RepoName) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT pulled_at FROM mirror_pulls WHERE repo = $1")
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Repositories under `prefix/` last pulled before `cutoff`.
    pub async fn unpulled_repos(&self, prefix: &str, cutoff: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            // A prefix compare, not a range: PostgreSQL's collations may not
            // sort '/' before '0'.
            "SELECT repo FROM mirror_pulls \
             WHERE substr(repo, 1, CAST($1 AS INTEGER)) = $2 AND pulled_at < $3 ORDER BY repo",
        )
        .bind(prefix.len() as i64 + 1)
        .bind(format!("{prefix}/"))
        .bind(cutoff)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The digests of every manifest of `repo`.
    pub async fn repo_manifests(&self, repo: &RepoName) -> Result<Vec<Digest>> {
        let rows = sqlx::query("SELECT digest FROM manifests WHERE repo = $1 ORDER BY digest")
            .bind(repo.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| digest_col(r, "digest")).collect()
    }

    /// Forget the last pull of `repo` (its content is gone).
    pub async fn forget_pull(&self, repo: &str) -> Result<()> {
        sqlx::query("DELETE FROM mirror_pulls WHERE repo = $1")
            .bind(repo)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
