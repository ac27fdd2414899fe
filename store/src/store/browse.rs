//! Browsing: what a web UI shows of the store, read through the facade like
//! everything else. Repository summaries with search and sort, tag pages
//! with each tag's manifest, manifest push times and sizes, a repository's
//! small blobs (image configs) read whole, and the store's totals.

use bytes::Bytes;

use super::Store;
pub use crate::meta::{RepoSort, RepoSummary, StoreTotals, TagDetail};
use crate::{layout, Digest, Error, RepoName, Result};

impl Store {
    /// Every repository whose name contains `search` (starts with it, with
    /// `prefix`), summed up, in `sort` order. The caller pages (after
    /// filtering by its own access rules).
    pub async fn repo_summaries(
        &self,
        search: &str,
        prefix: bool,
        sort: RepoSort,
    ) -> Result<Vec<RepoSummary>> {
        self.meta.repo_summaries(search, prefix, sort).await
    }

    /// The tags of `repo` after `last` (in byte order), at most `limit`,
    /// with their manifests; [`Error::NameUnknown`] for an empty first page
    /// of a repository that holds nothing.
    pub async fn tag_details(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: u64,
    ) -> Result<Vec<TagDetail>> {
        let limit = limit.min(i64::MAX as u64) as i64;
        let page = self
            .meta
            .tag_details(repo, last.unwrap_or(""), limit)
            .await?;
        if page.is_empty() && last.is_none() && !self.meta.repo_exists(repo).await? {
            return Err(Error::NameUnknown {
                name: repo.to_string(),
            });
        }
        Ok(page)
    }

    /// How many tags `repo` has.
    pub async fn tag_count(&self, repo: &RepoName) -> Result<u64> {
        self.meta.tag_count(repo).await
    }

    /// The tags of `repo` pointing at `digest`.
    pub async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        self.meta.tags_of(repo, digest).await
    }

    /// When a manifest of `repo` was pushed (Unix seconds) and the bytes of
    /// the content it references; `None` when `repo` has no such manifest.
    pub async fn manifest_pushed(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<(i64, u64)>> {
        self.meta.manifest_pushed(repo, digest).await
    }

    /// A blob of `repo` read whole, when it is at most `limit` bytes (an
    /// image config); [`Error::BlobUnknown`] when `repo` does not hold it,
    /// `None` when it is larger.
    pub async fn small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: u64,
    ) -> Result<Option<Bytes>> {
        if self.blob_size(repo, digest).await? > limit {
            return Ok(None);
        }
        let bytes = self.objects.read_all(&layout::blob(digest)).await?;
        if Digest::of(digest.algorithm(), &bytes) != *digest {
            return Err(Error::Corrupt {
                detail: format!("blob {digest} does not match its digest"),
            });
        }
        Ok(Some(bytes))
    }

    /// Totals over the whole store (the dashboard's figures).
    pub async fn totals(&self) -> Result<StoreTotals> {
        self.meta.totals().await
    }
}
