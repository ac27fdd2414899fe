//! Repositories: a repository exists while it holds a manifest or a blob.

use sqlx::Row;

use super::Meta;
use crate::{RepoName, Result};

impl Meta {
    /// Whether the repository holds anything at all.
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM manifests WHERE repo = $1 \
             UNION ALL SELECT 1 FROM repo_blobs WHERE repo = $1 LIMIT 1",
        )
        .bind(repo.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// Repository names in lexical order, after `last`, at most `limit`.
    pub async fn repositories(&self, last: Option<&str>, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT repo FROM (SELECT repo FROM manifests UNION SELECT repo FROM repo_blobs) AS r \
             WHERE repo > $1 ORDER BY repo LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
