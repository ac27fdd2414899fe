//! What each page shows, read from the [`Store`] and checked against the
//! access rules; the pages render these and the JSON API returns them.
//! The repository list, tag list and dashboard are here; the manifest page
//! (layers, config, history, platforms, referrers) is in `manifest`.

use serde::{Deserialize, Serialize};
use store::{Reference, RepoName, RepoSort, Store};

mod manifest;

use manifest::index_platforms;
pub use manifest::*;

use super::{UiError, Viewer};
use crate::auth::Action;

/// Repositories on one page of the list.
pub const REPO_PAGE: usize = 50;
/// Tags on one page of a repository.
pub const TAG_PAGE: u64 = 50;

/// The repository list's query string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RepoQuery {
    /// Text the name contains (or starts with).
    pub q: String,
    /// `prefix` or `substring` (default).
    pub mode: String,
    /// `name` (default), `size` or `pushed`.
    pub sort: String,
    /// 1-based page.
    pub page: usize,
}

impl RepoQuery {
    fn sort(&self) -> RepoSort {
        match self.sort.as_str() {
            "size" => RepoSort::Size,
            "pushed" => RepoSort::LastPush,
            _ => RepoSort::Name,
        }
    }
}

/// One page of repositories the viewer may pull.
#[derive(Debug, Serialize)]
pub struct RepoList {
    /// The search text.
    pub q: String,
    /// Whether the search is a prefix.
    pub prefix: bool,
    /// `name`, `size` or `pushed`.
    pub sort: &'static str,
    /// This page (1-based).
    pub page: usize,
    /// Pages in all.
    pub pages: usize,
    /// Matching repositories in all.
    pub total: usize,
    /// This page's repositories.
    pub items: Vec<RepoItem>,
}

/// One repository in the list.
#[derive(Debug, Serialize)]
pub struct RepoItem {
    /// Name.
    pub name: String,
    /// Tags.
    pub tags: u64,
    /// Bytes of its blobs.
    pub size: u64,
    /// Bytes of the blobs only it holds.
    pub unique_size: u64,
    /// Last push, Unix seconds (0: none).
    pub last_push: i64,
}

/// The repositories `viewer` may pull that match `q`, one page of them.
pub async fn repo_list(store: &Store, viewer: &Viewer, q: &RepoQuery) -> Result<RepoList, UiError> {
    let sort = q.sort();
    let prefix = q.mode == "prefix";
    let all = store.repo_summaries(q.q.trim(), prefix, sort).await?;
    let visible: Vec<_> = all
        .into_iter()
        .filter(|r| viewer.may(&r.name, Action::Pull))
        .collect();
    let total = visible.len();
    let pages = total.div_ceil(REPO_PAGE).max(1);
    let page = q.page.clamp(1, pages);
    let items = visible
        .into_iter()
        .skip((page - 1) * REPO_PAGE)
        .take(REPO_PAGE)
        .map(|r| RepoItem {
            name: r.name,
            tags: r.tags,
            size: r.size,
            unique_size: r.unique_size,
            last_push: r.last_push,
        })
        .collect();
    Ok(RepoList {
        q: q.q.trim().to_owned(),
        prefix,
        sort: match sort {
            RepoSort::Name => "name",
            RepoSort::Size => "size",
            RepoSort::LastPush => "pushed",
        },
        page,
        pages,
        total,
        items,
    })
}

/// A tag page's query string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TagQuery {
    /// The page starts after this tag.
    pub last: Option<String>,
    /// Tags on the page (default and at most [`TAG_PAGE`] x 4).
    pub n: Option<u64>,
}

/// One page of a repository's tags.
#[derive(Debug, Serialize)]
pub struct TagList {
    /// The repository.
    pub repo: String,
    /// Tags in all.
    pub total: u64,
    /// The page started after this tag.
    pub last: Option<String>,
    /// Where the next page starts (`?last=`), if there is one.
    pub next: Option<String>,
    /// Whether the viewer may delete here.
    pub can_delete: bool,
    /// The tags.
    pub items: Vec<TagItem>,
}

/// One tag.
#[derive(Debug, Serialize)]
pub struct TagItem {
    /// The tag.
    pub name: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Its manifest's media type.
    pub media_type: String,
    /// Its artifact type, if any.
    pub artifact_type: Option<String>,
    /// Bytes of the content (each blob once).
    pub size: u64,
    /// When it was pushed, Unix seconds.
    pub pushed_at: i64,
    /// An index's platforms (`os/arch[/variant]`); empty for an image.
    pub platforms: Vec<String>,
}

/// The viewer must be allowed to pull `repo`.
pub fn require_pull(viewer: &Viewer, repo: &RepoName) -> Result<(), UiError> {
    if viewer.may(repo.as_str(), Action::Pull) {
        Ok(())
    } else if viewer.is_anonymous() && viewer.auth_on {
        Err(UiError::LoginRequired)
    } else {
        Err(UiError::Forbidden)
    }
}

/// A page of `repo`'s tags.
pub async fn tag_list(
    store: &Store,
    viewer: &Viewer,
    repo: &RepoName,
    q: &TagQuery,
) -> Result<TagList, UiError> {
    require_pull(viewer, repo)?;
    let n = q.n.unwrap_or(TAG_PAGE).clamp(1, TAG_PAGE * 4);
    let last = q.last.as_deref().filter(|l| !l.is_empty());
    let mut rows = store.tag_details(repo, last, n + 1).await?;
    let more = rows.len() as u64 > n;
    rows.truncate(n as usize);
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let platforms = if store::manifest::is_index(&r.media_type) {
            let m = store
                .manifest(repo, &Reference::Digest(r.digest.clone()), true)
                .await?;
            index_platforms(m.bytes.as_deref().unwrap_or_default())
                .into_iter()
                .map(|p| p.platform)
                .collect()
        } else {
            Vec::new()
        };
        items.push(TagItem {
            name: r.name,
            digest: r.digest.to_string(),
            media_type: r.media_type,
            artifact_type: r.artifact_type,
            size: r.total_size,
            pushed_at: r.pushed_at,
            platforms,
        });
    }
    Ok(TagList {
        repo: repo.to_string(),
        total: store.tag_count(repo).await?,
        last: last.map(str::to_owned),
        next: if more {
            items.last().map(|t| t.name.clone())
        } else {
            None
        },
        can_delete: viewer.may(repo.as_str(), Action::Delete),
        items,
    })
}

/// The dashboard's figures.
#[derive(Debug, Serialize)]
pub struct DashboardView {
    /// Bytes the storage holds (each blob once).
    pub stored_bytes: u64,
    /// Bytes as the repositories see them (a blob once per repository).
    pub logical_bytes: u64,
    /// What dedup saves: logical minus stored.
    pub saved_bytes: u64,
    /// Stored contents.
    pub blobs: u64,
    /// Repositories.
    pub repositories: u64,
    /// Manifests.
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Open upload sessions.
    pub uploads: u64,
    /// Bytes the open uploads hold.
    pub upload_bytes: u64,
    /// GC runs of this process.
    pub gc_runs: u64,
    /// When GC last finished (Unix seconds; none since start: absent).
    pub gc_last_success: Option<u64>,
    /// Bytes GC freed since start.
    pub gc_bytes_freed: u64,
    /// GC runs that failed since start.
    pub gc_failures: u64,
    /// Each mirrored upstream's hits and misses since start (none: no mirror).
    pub mirrors: Vec<crate::mirror::UpstreamStats>,
    /// Each `[[quota]]`'s usage (none configured: empty).
    pub quotas: Vec<QuotaLine>,
}

/// One quota on the dashboard.
#[derive(Debug, Serialize)]
pub struct QuotaLine {
    /// Its repository glob.
    pub repositories: String,
    /// Distinct bytes its repositories hold.
    pub used: u64,
    /// Its budget.
    pub limit: u64,
    /// `used` in percent of `limit`.
    pub percent: u64,
    /// The warning threshold in percent.
    pub warn_percent: u8,
}

/// The dashboard: the store's totals, this process's GC record and its
/// mirror's counters.
pub async fn dashboard(state: &crate::routes::AppState) -> Result<DashboardView, UiError> {
    let t = state.store.totals().await?;
    let gc = state.metrics.gc_status();
    let quotas = crate::policy::quota::usage(&state.store, &state.policy)
        .await?
        .iter()
        .map(|q| QuotaLine {
            repositories: q.quota.repositories.clone(),
            used: q.usage.used,
            limit: q.quota.max_bytes,
            percent: q.percent(),
            warn_percent: q.quota.warn_percent,
        })
        .collect();
    Ok(DashboardView {
        stored_bytes: t.stored_bytes,
        logical_bytes: t.logical_bytes,
        saved_bytes: t.logical_bytes.saturating_sub(t.stored_bytes),
        blobs: t.blobs,
        repositories: t.repositories,
        manifests: t.manifests,
        tags: t.tags,
        uploads: t.uploads,
        upload_bytes: t.upload_bytes,
        gc_runs: gc.runs,
        gc_last_success: (gc.last_success > 0).then_some(gc.last_success),
        gc_bytes_freed: gc.bytes_freed,
        gc_failures: gc.failures,
        mirrors: state.mirror.stats(),
        quotas,
    })
}
