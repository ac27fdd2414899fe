//! The `uploads` table (open sessions) and `upload_parts` (their chunks).

use sqlx::Row;

use super::{now, Meta};
use crate::{RepoName, Result, UploadId};

/// An open upload session.
#[derive(Debug, Clone)]
pub struct UploadRow {
    /// The repository the upload belongs to.
    pub repo: String,
    /// Bytes received so far.
    pub size: u64,
    /// Number of parts appended so far.
    pub parts: i64,
}

/// One appended chunk of an upload.
#[derive(Debug, Clone)]
pub struct PartRow {
    /// The part's object id (see `layout::upload_part`).
    pub part_id: String,
}

impl Meta {
    /// Open a new upload session.
    pub async fn create_upload(&self, id: &UploadId, repo: &RepoName) -> Result<()> {
        let now = now();
        sqlx::query(
            "INSERT INTO uploads (id, repo, size, parts, started_at, updated_at) \
             VALUES ($1, $2, 0, 0, $3, $3)",
        )
        .bind(id.as_str())
        .bind(repo.as_str())
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// An upload session, if it exists.
    pub async fn upload(&self, id: &UploadId) -> Result<Option<UploadRow>> {
        let row = sqlx::query("SELECT repo, size, parts FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.write)
            .await?;
        Ok(row.map(|r| UploadRow {
            repo: r.get(0),
            size: r.get::<i64, _>(1) as u64,
            parts: r.get(2),
        }))
    }

    /// Record an appended part if the upload is still at `expected` (size, parts).
    /// Returns false when another request moved the upload on first.
    pub async fn append_part(
        &self,
        id: &UploadId,
        expected: &UploadRow,
        part_id: &str,
        len: u64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE uploads SET size = size + $1, parts = parts + 1, updated_at = $2 \
             WHERE id = $3 AND size = $4 AND parts = $5",
        )
        .bind(len as i64)
        .bind(now())
        .bind(id.as_str())
        .bind(expected.size as i64)
        .bind(expected.parts)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_parts (upload, seq, part_id, size) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(expected.parts)
        .bind(part_id)
        .bind(len as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The parts of an upload, in order.
    pub async fn upload_parts(&self, id: &UploadId) -> Result<Vec<PartRow>> {
        let rows = sqlx::query("SELECT part_id FROM upload_parts WHERE upload = $1 ORDER BY seq")
            .bind(id.as_str())
            .fetch_all(&self.write)
            .await?;
        Ok(rows.iter().map(|r| PartRow { part_id: r.get(0) }).collect())
    }

    /// Forget an upload session. Returns whether it existed.
    pub async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM upload_parts WHERE upload = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ids of every open upload.
    pub async fn upload_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM uploads")
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Upload sessions not touched since `cutoff`.
    pub async fn stale_uploads(&self, cutoff: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE updated_at < $1")
            .bind(cutoff)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
