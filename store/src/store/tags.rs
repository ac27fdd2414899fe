//! Tag pages, served from a cached whole list while its version is current,
//! and the repository listing.

use std::sync::Arc;

use super::Store;
use crate::{Error, RepoName, Result};

/// A page of a repository's sorted tags: a window on the shared (cached)
/// list, so serving a 10,000-tag list copies no tag.
#[derive(Debug, Clone)]
pub struct TagPage {
    all: Arc<Vec<String>>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for TagPage {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.all[self.range.clone()]
    }
}

impl Store {
    /// Tags of a repository, sorted, after `last`, at most `limit`.
    pub async fn tags(&self, repo: &RepoName, last: Option<&str>, limit: u64) -> Result<TagPage> {
        let all = self.all_tags(repo).await?;
        let from = last.map_or(0, |last| all.partition_point(|t| t.as_str() <= last));
        let to = from.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX));
        let page = TagPage {
            range: from..to.min(all.len()),
            all,
        };
        if page.is_empty() && last.is_none() && !self.meta.repo_exists(repo).await? {
            return Err(Error::NameUnknown {
                name: repo.to_string(),
            });
        }
        Ok(page)
    }

    /// Every tag of `repo`, in byte order, from the cache when its version is
    /// still the database's. The version is read before the list, so a cached
    /// list is never older than the version it is filed under.
    async fn all_tags(&self, repo: &RepoName) -> Result<Arc<Vec<String>>> {
        let version = self.meta.tag_version(repo).await?;
        if let Some(tags) = self.tag_lists.get(repo.as_str(), version) {
            return Ok(tags);
        }
        let mut tags = self.meta.tags(repo, None, i64::MAX).await?;
        tags.sort_unstable();
        let tags = Arc::new(tags);
        self.tag_lists.insert(repo.as_str(), version, &tags);
        Ok(tags)
    }

    /// Repository names, sorted, after `last`, at most `limit`.
    pub async fn repositories(&self, last: Option<&str>, limit: u64) -> Result<Vec<String>> {
        self.meta
            .repositories(last, limit.min(i64::MAX as u64) as i64)
            .await
    }
}
