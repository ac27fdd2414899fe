//! `registry sync` (and `sync_interval` inside `serve`): pre-fetch what an
//! upstream's filters select, so a first pull is a local hit, on an
//! air-gapped site too. For each repository (`repositories`, globs matched
//! against the upstream's catalog, minus `exclude`) and each tag matching
//! `tags`: the manifest through [`Mirror::manifest`], then every child
//! manifest and blob through [`Mirror::blob`], the same paths as a client's
//! pull. What is stored already is skipped, so a run that stopped resumes
//! where it was; each tag done is reported as a progress line. Of an index,
//! only the entries whose platform is in `platforms` are fetched (all when
//! the list is empty); a client's pull of another platform still works,
//! through the mirror as usual.

use std::collections::HashSet;

use store::manifest::{Descriptor, Platform, RefKind};
use store::{Digest, Reference, Store, Tag};

use super::blobs::StoreHolder;
use super::{Mirror, MirrorError, Target, Upstream, UpstreamError};
use crate::auth::glob_match;

/// The most repositories or tags one listing brings.
const MAX_LISTED: usize = 100_000;

/// What a sync did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Tags synced (or selected, dry).
    pub tags: usize,
    /// Tags that failed (the run goes on with the next).
    pub failed: usize,
}

impl Mirror {
    /// Sync every upstream that has `repositories`, or only `only`.
    pub async fn sync(
        &self,
        holder: StoreHolder,
        only: Option<&str>,
        dry_run: bool,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<SyncReport, MirrorError> {
        let mut report = SyncReport::default();
        let mut found = only.is_none();
        for up in &self.upstreams {
            if only.is_some_and(|n| n != up.name) {
                continue;
            }
            found = true;
            let r = self.sync_upstream(&holder, up, dry_run, progress).await?;
            report.tags += r.tags;
            report.failed += r.failed;
        }
        if !found {
            return Err(MirrorError::Upstream {
                upstream: only.unwrap_or_default().to_owned(),
                source: UpstreamError::Invalid {
                    what: "no such upstream in the configuration".into(),
                },
            });
        }
        Ok(report)
    }

    /// Sync one upstream.
    pub async fn sync_upstream(
        &self,
        holder: &StoreHolder,
        up: &std::sync::Arc<Upstream>,
        dry_run: bool,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<SyncReport, MirrorError> {
        let mut report = SyncReport::default();
        let f = &up.sync;
        let mut repos: Vec<String> = f
            .repositories
            .iter()
            .filter(|p| !p.contains('*'))
            .cloned()
            .collect();
        if f.repositories.iter().any(|p| p.contains('*')) {
            let catalog = up
                .client
                .list(None, MAX_LISTED)
                .await
                .map_err(|e| up.failed(e))?;
            repos.extend(
                catalog
                    .into_iter()
                    .filter(|r| f.repositories.iter().any(|p| glob_match(p, r))),
            );
        }
        repos.sort();
        repos.dedup();
        repos.retain(|r| !f.exclude.iter().any(|p| glob_match(p, r)));
        for repo in repos {
            let Some(t) = super::target(up, &repo) else {
                progress(format!(
                    "sync: {}: skipped {repo:?}: not a valid name here",
                    up.name
                ));
                continue;
            };
            let mut tags = match up.client.list(Some(&t.remote), MAX_LISTED).await {
                Ok(tags) => tags,
                Err(e) => {
                    progress(format!("sync: {}: cannot list tags: {e}", t.local));
                    report.failed += 1;
                    continue;
                }
            };
            tags.retain(|tag| f.tags.as_ref().is_none_or(|re| re.is_match(tag)));
            let total = tags.len();
            for (i, tag) in tags.iter().enumerate() {
                let n = i + 1;
                report.tags += 1;
                if dry_run {
                    progress(format!("sync: would fetch {}:{tag} ({n}/{total})", t.local));
                    continue;
                }
                match self.sync_tag(holder, &t, tag).await {
                    Ok(blobs) => progress(format!(
                        "sync: {}:{tag} ({n}/{total}): {blobs} blobs present",
                        t.local
                    )),
                    Err(e) => {
                        report.failed += 1;
                        progress(format!(
                            "sync: {}:{tag} ({n}/{total}): failed: {e}",
                            t.local
                        ));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Fetch a tag's manifest and everything it references; the number of blobs.
    async fn sync_tag(
        &self,
        holder: &StoreHolder,
        t: &Target,
        tag: &str,
    ) -> Result<usize, MirrorError> {
        let tag: Tag = tag.parse()?;
        let mut todo = vec![Reference::Tag(tag)];
        let mut blobs = 0;
        while let Some(reference) = todo.pop() {
            let store: &Store = (**holder).as_ref();
            self.manifest(store, t, &reference).await?;
            let m = store.manifest(&t.local, &reference, true).await?;
            let bytes = m.bytes.unwrap_or_default();
            let parsed = store::manifest::parse(Some(&m.media_type), &bytes)?;
            let skipped = other_platforms(&bytes, &t.upstream.sync.platforms);
            for (digest, kind, _) in parsed.refs {
                match kind {
                    RefKind::Manifest if skipped.contains(&digest) => {}
                    RefKind::Manifest => todo.push(Reference::Digest(digest)),
                    RefKind::Blob => {
                        self.sync_blob(holder, t, &digest).await?;
                        blobs += 1;
                    }
                    RefKind::ForeignBlob => {}
                }
            }
        }
        Ok(blobs)
    }

    async fn sync_blob(
        &self,
        holder: &StoreHolder,
        t: &Target,
        digest: &Digest,
    ) -> Result<(), MirrorError> {
        self.blob(holder.clone(), t, digest, false)
            .await
            .map(|_| ())
    }
}

/// The entries of an index whose platform is none of `wanted` (nothing
/// when `wanted` is empty, or the manifest is not an index). An entry that
/// names no platform is kept.
fn other_platforms(manifest: &[u8], wanted: &[Platform]) -> HashSet<Digest> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    if wanted.is_empty() {
        return HashSet::new();
    }
    let Ok(index) = serde_json::from_slice::<Index>(manifest) else {
        return HashSet::new();
    };
    index
        .manifests
        .into_iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| !wanted.iter().any(|w| w.matches(p)))
        })
        .map(|d| d.digest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wanted_platforms_of_an_index_are_kept() {
        let (amd, arm, art) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
            format!("sha256:{}", "c".repeat(64)),
        );
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "m", "digest": amd, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "m", "digest": arm, "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "m", "digest": art, "size": 1},
        ]})
        .to_string();
        let wanted: Vec<Platform> = vec!["linux/amd64".parse().unwrap()];
        let skipped = other_platforms(index.as_bytes(), &wanted);
        assert_eq!(skipped, HashSet::from([arm.parse().unwrap()]));
        assert!(other_platforms(index.as_bytes(), &[]).is_empty());
        assert!(other_platforms(b"{\"layers\": []}", &wanted).is_empty());
    }
}
