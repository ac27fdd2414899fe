//! The `blobs` table (content stored once, by digest) and `repo_blobs`
//! (which repository may see which blob).

use sqlx::Row;

use super::{now, outbox, Meta, NewEvent};
use crate::quota::Quota;
use crate::{Digest, RepoName, Result, UploadId};

/// Make `digest` visible in `repo` (idempotent), inside the caller's
/// transaction. `created_at` is when it was last linked: GC forgets a link
/// no manifest of the repository uses once that is past its grace period.
async fn link_repo_blob(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    repo: &RepoName,
    digest: &Digest,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repo, digest) DO UPDATE SET created_at = excluded.created_at",
    )
    .bind(repo.as_str())
    .bind(digest.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Meta {
    /// Size of a blob visible in `repo`.
    pub async fn repo_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest \
             WHERE r.repo = $1 AND r.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Up to `limit` repositories that hold `digest`, in name order.
    pub async fn repos_holding_blob(&self, digest: &Digest, limit: u32) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT repo FROM repo_blobs WHERE digest = $1 ORDER BY repo LIMIT $2")
                .bind(digest.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Size of a stored blob, whatever repository holds it.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Record a committed blob and make it visible in `repo`, within
    /// `quotas` ([`Meta::admit`]); also closes `upload` if given.
    pub async fn commit_blob(
        &self,
        repo: &RepoName,
        (digest, size): (&Digest, u64),
        upload: Option<&UploadId>,
        quotas: &[Quota],
    ) -> Result<()> {
        let now = now();
        let mut tx = self.begin_write().await?;
        self.admit(&mut tx, quotas, repo, (digest, size)).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_access) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (digest) DO UPDATE SET last_access = excluded.last_access",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        link_repo_blob(&mut tx, repo, digest, now).await?;
        if let Some(id) = upload {
            sqlx::query("DELETE FROM upload_parts WHERE upload = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Make a blob of `from` visible in `repo` too. Returns the blob's size,
    /// or `None` if `from` does not hold it. There is deliberately no way to
    /// mount a blob by digest alone: content is only ever linked from a
    /// repository the caller names (and the registry checks it may read).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
        events: &[NewEvent],
        quotas: &[Quota],
    ) -> Result<Option<u64>> {
        let now = now();
        let mut tx = self.begin_write().await?;
        // Read the source inside the transaction, and link only if the blob
        // is still stored: a GC may have swept it since the client asked.
        let row = sqlx::query(
            "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest \
             WHERE r.repo = $1 AND r.digest = $2",
        )
        .bind(from.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(size) = row.map(|r| r.get::<i64, _>(0) as u64) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let touched = sqlx::query("UPDATE blobs SET last_access = $1 WHERE digest = $2")
            .bind(now)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        self.admit(&mut tx, quotas, repo, (digest, size)).await?;
        link_repo_blob(&mut tx, repo, digest, now).await?;
        outbox::insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(Some(size))
    }

    /// Remove a blob from `repo`. Returns whether it was there.
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Total bytes of stored content.
    pub async fn stored_bytes(&self) -> Result<u64> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }
}
