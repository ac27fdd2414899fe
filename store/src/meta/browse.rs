//! Read-only queries for browsing: repository summaries (tag count, sizes,
//! last push) with search and sort, tag pages with each tag's manifest, and
//! the store's totals. Nothing here writes.

use sqlx::Row;

use super::{digest_col, Meta};
use crate::{Digest, RepoName, Result};

/// `text` with LIKE's wildcards (`%`, `_`) and the escape (`\`) escaped.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The bytes of the blobs a manifest references, one level (an image's
/// config and layers) and two (an index's children's), each blob once.
/// `t` is the outer row with `repo` and `digest` columns.
const MANIFEST_TOTAL: &str =
    "(SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN \
     (SELECT c.child FROM manifest_refs c WHERE c.repo = t.repo AND c.manifest = t.digest \
      UNION SELECT g.child FROM manifest_refs c JOIN manifest_refs g \
        ON g.repo = c.repo AND g.manifest = c.child \
      WHERE c.repo = t.repo AND c.manifest = t.digest))";

/// How a repository list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RepoSort {
    /// By name, ascending.
    #[default]
    Name,
    /// By total size, largest first.
    Size,
    /// By last push, latest first.
    LastPush,
}

/// One repository, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    /// Its name.
    pub name: String,
    /// How many tags it has.
    pub tags: u64,
    /// Bytes of the blobs it holds (layers and configs).
    pub size: u64,
    /// Bytes of the blobs no other repository holds.
    pub unique_size: u64,
    /// When a manifest was last pushed or a tag last set (Unix seconds; 0: never).
    pub last_push: i64,
}

/// One tag, with the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDetail {
    /// The tag.
    pub name: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// When the tag was last set (Unix seconds).
    pub pushed_at: i64,
    /// The manifest's media type.
    pub media_type: String,
    /// The manifest's artifact type, if any.
    pub artifact_type: Option<String>,
    /// Bytes of the manifest itself.
    pub manifest_size: u64,
    /// Bytes of the content it references (an index: its children's), each blob once.
    pub total_size: u64,
}

/// Totals over the whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Bytes stored once each (what the storage holds).
    pub stored_bytes: u64,
    /// Stored contents.
    pub blobs: u64,
    /// Bytes as the repositories see them: each repository's blobs and
    /// manifests counted in each (without dedup, this would be stored).
    pub logical_bytes: u64,
    /// Repositories.
    pub repositories: u64,
    /// Manifests (per repository).
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Open upload sessions.
    pub uploads: u64,
    /// Bytes received by the open upload sessions.
    pub upload_bytes: u64,
}

impl Meta {
    /// Every repository whose name contains `search` (or starts with it,
    /// with `prefix`), with its summary, in the order asked.
    pub async fn repo_summaries(
        &self,
        search: &str,
        prefix: bool,
        sort: RepoSort,
    ) -> Result<Vec<RepoSummary>> {
        let pattern = if prefix {
            format!("{}%", like_escape(search))
        } else {
            format!("%{}%", like_escape(search))
        };
        let greatest = if self.is_sqlite() { "MAX" } else { "GREATEST" };
        let order = match sort {
            RepoSort::Name => "repo",
            RepoSort::Size => "size DESC, repo",
            RepoSort::LastPush => "last_push DESC, repo",
        };
        let sql = format!(
            "SELECT repo, tags, size, unique_size, {greatest}(pushed, tagged) AS last_push FROM ( \
             SELECT r.repo, \
               (SELECT COUNT(*) FROM tags t WHERE t.repo = r.repo) AS tags, \
               (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
                  WHERE rb.repo = r.repo) AS size, \
               (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest \
                  WHERE rb.repo = r.repo AND NOT EXISTS \
                  (SELECT 1 FROM repo_blobs o WHERE o.digest = rb.digest AND o.repo <> rb.repo)) AS unique_size, \
               (SELECT COALESCE(MAX(m.created_at), 0) FROM manifests m WHERE m.repo = r.repo) AS pushed, \
               (SELECT COALESCE(MAX(t.updated_at), 0) FROM tags t WHERE t.repo = r.repo) AS tagged \
             FROM (SELECT repo FROM manifests UNION SELECT repo FROM repo_blobs) AS r \
             WHERE r.repo LIKE $1 ESCAPE '\\') AS s ORDER BY {order}"
        );
        let rows = sqlx::query(&sql)
            .bind(pattern)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RepoSummary {
                    name: r.try_get("repo")?,
                    tags: r.try_get::<i64, _>("tags")? as u64,
                    size: r.try_get::<i64, _>("size")? as u64,
                    unique_size: r.try_get::<i64, _>("unique_size")? as u64,
                    last_push: r.try_get::<i64, _>("last_push")?,
                })
            })
            .collect()
    }

    /// The tags of `repo` after `last`, at most `limit`, each with its
    /// manifest's media type, artifact type, size and total content size.
    pub async fn tag_details(
        &self,
        repo: &RepoName,
        last: &str,
        limit: i64,
    ) -> Result<Vec<TagDetail>> {
        let sql = format!(
            "SELECT t.name, t.digest, t.updated_at, m.media_type, m.artifact_type, m.size, \
             {MANIFEST_TOTAL} AS total \
             FROM tags t JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest \
             WHERE t.repo = $1 AND t.name > $2 ORDER BY t.name LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(repo.as_str())
            .bind(last)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TagDetail {
                    name: r.try_get("name")?,
                    digest: digest_col(r, "digest")?,
                    pushed_at: r.try_get("updated_at")?,
                    media_type: r.try_get("media_type")?,
                    artifact_type: r.try_get("artifact_type")?,
                    manifest_size: r.try_get::<i64, _>("size")? as u64,
                    total_size: r.try_get::<i64, _>("total")? as u64,
                })
            })
            .collect()
    }

    /// How many tags `repo` has.
    pub async fn tag_count(&self, repo: &RepoName) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) FROM tags WHERE repo = $1")
            .bind(repo.as_str())
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get::<i64, _>(0)? as u64)
    }

    /// When a manifest of `repo` was pushed and its total content size.
    pub async fn manifest_pushed(
        &self,
        repo: &RepoName,
        digest: &crate::Digest,
    ) -> Result<Option<(i64, u64)>> {
        let sql = format!(
            "SELECT t.created_at, {MANIFEST_TOTAL} AS total FROM manifests t \
             WHERE t.repo = $1 AND t.digest = $2"
        );
        let row = sqlx::query(&sql)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64)))
            .transpose()
    }

    /// The tags of `repo` that point at `digest`.
    pub async fn tags_of(&self, repo: &RepoName, digest: &crate::Digest) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name")
                .bind(repo.as_str())
                .bind(digest.to_string())
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Totals over the whole store.
    pub async fn totals(&self) -> Result<StoreTotals> {
        let row = sqlx::query(
            "SELECT (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs) AS stored, \
             (SELECT COUNT(*) FROM blobs) AS blobs, \
             (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest) AS logical, \
             (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM manifests) AS manifest_bytes, \
             (SELECT COUNT(*) FROM (SELECT repo FROM manifests UNION SELECT repo FROM repo_blobs) AS r) AS repos, \
             (SELECT COUNT(*) FROM manifests) AS manifests, \
             (SELECT COUNT(*) FROM tags) AS tags, \
             (SELECT COUNT(*) FROM uploads) AS uploads, \
             (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads) AS upload_bytes",
        )
        .fetch_one(&self.read)
        .await?;
        let n = |c: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(c)? as u64) };
        Ok(StoreTotals {
            stored_bytes: n("stored")?,
            blobs: n("blobs")?,
            logical_bytes: n("logical")? + n("manifest_bytes")?,
            repositories: n("repos")?,
            manifests: n("manifests")?,
            tags: n("tags")?,
            uploads: n("uploads")?,
            upload_bytes: n("upload_bytes")?,
        })
    }
}
