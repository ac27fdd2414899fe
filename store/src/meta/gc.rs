//! Garbage collection and integrity queries, and the cluster-wide locks of
//! GC and of retention.

use sqlx::Row;

use super::{digest_col, Meta};
use crate::{Digest, Result};

/// A blob no manifest references, idle since before the GC cutoff.
#[derive(Debug, Clone)]
pub struct Unreferenced {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

fn sized_blob(r: &sqlx::any::AnyRow) -> Result<Unreferenced> {
    Ok(Unreferenced {
        digest: digest_col(r, "digest")?,
        size: r.try_get::<i64, _>("size")? as u64,
    })
}

/// Garbage collection and integrity queries.
impl Meta {
    /// Blobs that no manifest of any repository references, are not themselves
    /// manifests, and were last used before `cutoff`.
    pub async fn unreferenced_blobs(&self, cutoff: i64) -> Result<Vec<Unreferenced>> {
        let rows = sqlx::query(
            "SELECT b.digest, b.size FROM blobs b WHERE b.last_access < $1 \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = b.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest) \
             ORDER BY b.digest",
        )
        .bind(cutoff)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(sized_blob).collect()
    }

    /// Links of blobs to repositories that no longer use them: last linked
    /// before `cutoff`, referenced by no manifest of that repository and not
    /// one of its manifests (an upload never pushed with a manifest, or a
    /// layer of deleted manifests also kept by another repository). With
    /// `dry_run` only counted; otherwise deleted. Quota usage counts links,
    /// so this is what makes it exact after deletes and GC.
    pub async fn unused_links(&self, cutoff: i64, dry_run: bool) -> Result<u64> {
        const UNUSED: &str = "FROM repo_blobs WHERE created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r \
                             WHERE r.repo = repo_blobs.repo AND r.child = repo_blobs.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifests m \
                             WHERE m.repo = repo_blobs.repo AND m.digest = repo_blobs.digest)";
        if dry_run {
            let row = sqlx::query(&format!("SELECT COUNT(*) {UNUSED}"))
                .bind(cutoff)
                .fetch_one(&self.read)
                .await?;
            return Ok(row.try_get::<i64, _>(0)? as u64);
        }
        let done = sqlx::query(&format!("DELETE {UNUSED}"))
            .bind(cutoff)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    /// Start forgetting a blob if it is still unreferenced and idle since before
    /// `cutoff`. The returned sweep holds the blob's row deleted but uncommitted:
    /// the caller deletes the bytes, then commits, so a writer reviving the blob
    /// waits for the sweep and then finds it gone. `None` if the blob is in use.
    pub async fn begin_sweep(&self, digest: &Digest, cutoff: i64) -> Result<Option<Sweep>> {
        let d = digest.to_string();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM repo_blobs WHERE digest = $1")
            .bind(&d)
            .execute(&mut *tx)
            .await?;
        // The conditions live in the DELETE itself: a writer that refreshed the
        // blob meanwhile holds its row, and PostgreSQL re-checks them after it.
        let gone = sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND last_access < $2 \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.child = blobs.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = blobs.digest)",
        )
        .bind(&d)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        if gone.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        Ok(Some(Sweep { tx }))
    }

    /// Untagged manifests created before `cutoff` that nothing refers to: no tag,
    /// no index, and no referrer whose subject they are; referrers whose subject
    /// is still in the repository are kept too.
    pub async fn unreferenced_manifests(&self, cutoff: i64) -> Result<Vec<(String, Digest)>> {
        let rows = sqlx::query(
            "SELECT m.repo, m.digest FROM manifests m WHERE m.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.child = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.subject = m.digest) \
             AND (m.subject IS NULL OR NOT EXISTS \
                  (SELECT 1 FROM manifests p WHERE p.repo = m.repo AND p.digest = m.subject))",
        )
        .bind(cutoff)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("repo")?, digest_col(r, "digest")?)))
            .collect()
    }

    /// Every stored blob with its size, for integrity checks.
    pub async fn all_blobs(&self) -> Result<Vec<Unreferenced>> {
        let rows = sqlx::query("SELECT digest, size FROM blobs ORDER BY digest")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(sized_blob).collect()
    }

    /// Forget a corrupt blob everywhere; returns the manifests (repo, digest) that reference it.
    pub async fn quarantine_blob(&self, digest: &Digest) -> Result<Vec<(String, String)>> {
        let d = digest.to_string();
        let mut tx = self.begin_write().await?;
        let affected = sqlx::query("SELECT repo, manifest FROM manifest_refs WHERE child = $1")
            .bind(&d)
            .fetch_all(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM repo_blobs WHERE digest = $1",
            "DELETE FROM blobs WHERE digest = $1",
        ] {
            sqlx::query(sql).bind(&d).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(affected.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The `(repo, manifest)` pairs whose manifests reference `digest`.
    pub async fn blob_referrers(&self, digest: &Digest) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT repo, manifest FROM manifest_refs WHERE child = $1")
            .bind(digest.to_string())
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Take the cluster-wide GC lock: a PostgreSQL advisory lock, held by a
    /// dedicated connection until [`GcLock::release`]. SQLite serves one node,
    /// so there the lock is always granted. `None` if another replica holds it.
    pub async fn try_gc_lock(&self) -> Result<Option<GcLock>> {
        self.try_lock(GC_LOCK_KEY).await
    }

    /// Take the cluster-wide retention lock, as [`Meta::try_gc_lock`] does
    /// the GC one (a lock of its own: a retention pass never delays GC).
    pub async fn try_retention_lock(&self) -> Result<Option<GcLock>> {
        self.try_lock(RETENTION_LOCK_KEY).await
    }

    async fn try_lock(&self, key: i64) -> Result<Option<GcLock>> {
        if self.is_sqlite() {
            return Ok(Some(GcLock { key, conn: None }));
        }
        let mut conn = self.write.acquire().await?;
        let row = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if row.try_get::<bool, _>(0)? {
            Ok(Some(GcLock {
                key,
                conn: Some(conn),
            }))
        } else {
            Ok(None)
        }
    }
}

/// A blob's metadata deleted but not yet committed; see [`Meta::begin_sweep`].
pub struct Sweep {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl Sweep {
    /// Make the deletion final.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

const GC_LOCK_KEY: i64 = 0x5354_5241_5441_4743; // "STRATAGC"
const RETENTION_LOCK_KEY: i64 = 0x5354_5241_5441_5245; // "STRATARE"

/// A held cluster-wide lock (GC's or retention's); release it explicitly.
pub struct GcLock {
    key: i64,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

impl GcLock {
    /// Release the lock.
    pub async fn release(self) -> Result<()> {
        if let Some(mut conn) = self.conn {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
