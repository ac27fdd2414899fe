//! The manifest page's view: an image's layers, config and history, an
//! index's platforms, and the referrers of a manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{Digest, Reference, RepoName, Store};

use super::require_pull;
use crate::auth::Action;
use crate::ui::{UiError, Viewer};

/// The largest config blob read for an image page.
const CONFIG_LIMIT: u64 = 4 * 1024 * 1024;

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

pub(super) fn index_platforms(bytes: &[u8]) -> Vec<PlatformItem> {
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
