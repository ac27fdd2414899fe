//! What each page shows, read from the [`Store`] and checked against the
//! access rules; the pages render these and the JSON API returns them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{Digest, Reference, RepoName, RepoSort, Store};

use super::{UiError, Viewer};
use crate::auth::Action;

/// Repositories on one page of the list.
pub const REPO_PAGE: usize = 50;
/// Tags on one page of a repository.
pub const TAG_PAGE: u64 = 50;
/// The largest config blob read for an image page.
const CONFIG_LIMIT: u64 = 4 * 1024 * 1024;

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

/// One platform of an index.
#[derive(Debug, Serialize)]
pub struct PlatformItem {
    /// `os/arch[/variant]`, or `unknown`.
    pub platform: String,
    /// The child manifest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
}

fn index_platforms(bytes: &[u8]) -> Vec<PlatformItem> {
    let v: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    v.get("manifests")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let platform = match m.get("platform") {
                        Some(p) => {
                            let mut t = format!("{}/{}", s(p, "os"), s(p, "architecture"));
                            if let Some(variant) = p.get("variant").and_then(Value::as_str) {
                                t.push('/');
                                t.push_str(variant);
                            }
                            t
                        }
                        None => "unknown".to_owned(),
                    };
                    PlatformItem {
                        platform,
                        digest: s(m, "digest"),
                        media_type: s(m, "mediaType"),
                        size: m.get("size").and_then(Value::as_u64).unwrap_or(0),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One layer of an image.
#[derive(Debug, Serialize)]
pub struct LayerItem {
    /// Digest.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// Compressed size.
    pub size: u64,
    /// The build instruction that made it, from the config's history.
    pub instruction: Option<String>,
}

/// The fields of an image config people look for.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RunConfig {
    /// `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    pub cmd: Option<Vec<String>>,
    /// `ENV`.
    pub env: Option<Vec<String>>,
    /// `WORKDIR`.
    pub working_dir: Option<String>,
    /// `USER`.
    pub user: Option<String>,
    /// `EXPOSE`.
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// `LABEL`.
    pub labels: Option<BTreeMap<String, String>>,
    /// `HEALTHCHECK`.
    pub healthcheck: Option<Value>,
    /// `STOPSIGNAL`.
    pub stop_signal: Option<String>,
}

/// An image's config.
#[derive(Debug, Serialize)]
pub struct ConfigView {
    /// The config blob.
    pub digest: String,
    /// `os/architecture`.
    pub platform: String,
    /// When it was built, as written.
    pub created: Option<String>,
    /// The run settings.
    pub config: RunConfig,
}

/// Referrers of one artifact type.
#[derive(Debug, Serialize)]
pub struct ReferrerGroup {
    /// The artifact type (or the media type when it has none).
    pub artifact_type: String,
    /// The referrers.
    pub items: Vec<ReferrerItem>,
}

/// One referrer.
#[derive(Debug, Serialize)]
pub struct ReferrerItem {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// An image or index.
#[derive(Debug, Serialize)]
pub struct ManifestView {
    /// The repository.
    pub repo: String,
    /// The reference asked for.
    pub reference: String,
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its artifact type, if any.
    pub artifact_type: Option<String>,
    /// Bytes of the manifest.
    pub manifest_size: u64,
    /// Bytes of the content it references (each blob once).
    pub size: u64,
    /// When it was pushed, Unix seconds.
    pub pushed_at: i64,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// The manifest it refers to, for an artifact.
    pub subject: Option<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// An index's platforms.
    pub platforms: Vec<PlatformItem>,
    /// An image's layers.
    pub layers: Vec<LayerItem>,
    /// An image's config.
    pub config: Option<ConfigView>,
    /// Manifests referring to it, by artifact type.
    pub referrers: Vec<ReferrerGroup>,
    /// Whether the viewer may delete it.
    pub can_delete: bool,
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The instruction of a history entry, without the `/bin/sh -c #(nop)` noise.
fn instruction(created_by: &str) -> String {
    let t = created_by.trim();
    let t = t.strip_prefix("/bin/sh -c #(nop)").unwrap_or(t).trim();
    match t.strip_prefix("/bin/sh -c ") {
        Some(run) => format!("RUN {run}"),
        None => t.to_owned(),
    }
}

/// An image or index of `repo`, with its referrers.
pub async fn manifest_view(
    store: &Store,
    viewer: &Viewer,
    repo: &RepoName,
    reference: &Reference,
) -> Result<ManifestView, UiError> {
    require_pull(viewer, repo)?;
    let m = store.manifest(repo, reference, true).await?;
    let bytes = m.bytes.clone().unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let (pushed_at, size) = store
        .manifest_pushed(repo, &m.digest)
        .await?
        .unwrap_or((0, 0));
    let mut view = ManifestView {
        repo: repo.to_string(),
        reference: reference.to_string(),
        digest: m.digest.to_string(),
        media_type: m.media_type.clone(),
        artifact_type: v
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        manifest_size: m.size,
        size,
        pushed_at,
        tags: store.tags_of(repo, &m.digest).await?,
        subject: v
            .pointer("/subject/digest")
            .and_then(Value::as_str)
            .map(str::to_owned),
        annotations: string_map(v.get("annotations")),
        platforms: Vec::new(),
        layers: Vec::new(),
        config: None,
        referrers: referrers(store, repo, &m.digest).await?,
        can_delete: viewer.may(repo.as_str(), Action::Delete),
    };
    if store::manifest::is_index(&m.media_type) {
        view.platforms = index_platforms(&bytes);
        return Ok(view);
    }
    let config = v.get("config").cloned().unwrap_or_default();
    let config_digest = config
        .get("digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok());
    let config_json: Value = match &config_digest {
        Some(d) if is_image_config(config.get("mediaType").and_then(Value::as_str)) => {
            match store.small_blob(repo, d, CONFIG_LIMIT).await {
                Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
                Ok(None) | Err(store::Error::BlobUnknown { .. }) => Value::Null,
                Err(e) => return Err(e.into()),
            }
        }
        _ => Value::Null,
    };
    let mut history = config_json
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter(|e| {
                    !e.get("empty_layer")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                })
                .map(|e| e.get("created_by").and_then(Value::as_str).map(instruction))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter();
    view.layers = v
        .get("layers")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .map(|l| LayerItem {
                    digest: l
                        .get("digest")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    media_type: l
                        .get("mediaType")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    size: l.get("size").and_then(Value::as_u64).unwrap_or(0),
                    instruction: history.next().flatten(),
                })
                .collect()
        })
        .unwrap_or_default();
    if let (Some(d), true) = (config_digest, config_json.is_object()) {
        let s = |k: &str| config_json.get(k).and_then(Value::as_str).unwrap_or("");
        view.config = Some(ConfigView {
            digest: d.to_string(),
            platform: match (s("os"), s("architecture")) {
                ("", "") => "unknown".to_owned(),
                (os, arch) => format!("{os}/{arch}"),
            },
            created: config_json
                .get("created")
                .and_then(Value::as_str)
                .map(str::to_owned),
            config: config_json
                .get("config")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default(),
        });
    }
    Ok(view)
}

fn is_image_config(media_type: Option<&str>) -> bool {
    matches!(
        media_type,
        Some(store::manifest::OCI_CONFIG) | Some("application/vnd.docker.container.image.v1+json")
    )
}

async fn referrers(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Vec<ReferrerGroup>, UiError> {
    let mut groups: BTreeMap<String, Vec<ReferrerItem>> = BTreeMap::new();
    for d in store.referrers(repo, digest, None).await? {
        let kind = d
            .artifact_type
            .clone()
            .unwrap_or_else(|| d.media_type.clone());
        groups.entry(kind).or_default().push(ReferrerItem {
            digest: d.digest.to_string(),
            media_type: d.media_type,
            size: d.size,
            annotations: d
                .annotations
                .map(|a| string_map(Some(&Value::Object(a))))
                .unwrap_or_default(),
        });
    }
    Ok(groups
        .into_iter()
        .map(|(artifact_type, items)| ReferrerGroup {
            artifact_type,
            items,
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_instructions_lose_the_shell_noise() {
        assert_eq!(
            instruction("/bin/sh -c #(nop)  CMD [\"sh\"]"),
            "CMD [\"sh\"]"
        );
        assert_eq!(instruction("/bin/sh -c apk add curl"), "RUN apk add curl");
        assert_eq!(
            instruction("COPY . /app # buildkit"),
            "COPY . /app # buildkit"
        );
    }

    #[test]
    fn index_platforms_with_variants() {
        let index = br#"{"manifests":[
            {"mediaType":"m","digest":"sha256:a","size":3,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"m","digest":"sha256:b","size":4}]}"#;
        let p = index_platforms(index);
        assert_eq!(p[0].platform, "linux/arm64/v8");
        assert_eq!(p[1].platform, "unknown");
        assert_eq!(p[1].size, 4);
    }
}
