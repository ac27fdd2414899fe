//! The tag list of a mirrored repository: the upstream's (asked at most
//! once per `tag_ttl`, kept in memory meanwhile) merged with the tags
//! stored locally, which are all a client can be sure to pull when the
//! upstream is down. When the upstream cannot answer, the local tags alone
//! are listed, marked stale, rather than failing the request.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use store::{RepoName, Store};

use super::{Mirror, MirrorError, Target, UpstreamError};

/// The upstream's tag list of each mirrored repository, and when it was read.
pub type TagLists = Mutex<HashMap<RepoName, (Instant, Arc<Vec<String>>)>>;

/// The most tag names read from an upstream's list.
const MAX_UPSTREAM_TAGS: usize = 100_000;

/// The most local tags merged in.
const MAX_LOCAL_TAGS: u64 = 100_000;

impl Mirror {
    /// Every tag of `t`, sorted; with the reason when the upstream's list
    /// could not be had (the local tags alone, then).
    pub async fn tag_list(
        &self,
        store: &Store,
        t: &Target,
    ) -> Result<(Vec<String>, Option<String>), MirrorError> {
        let local = match store.tags(&t.local, None, MAX_LOCAL_TAGS).await {
            Ok(page) => page.to_vec(),
            Err(store::Error::NameUnknown { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let (upstream, stale) = match self.upstream_tags(t).await {
            Ok(tags) => (tags, None),
            Err(e) if e.is_unavailable() => {
                t.upstream.count(|m| &m.stale, 1);
                tracing::warn!(
                    upstream = %t.upstream.name,
                    repository = %t.local,
                    reason = %e,
                    "mirror: listing the local tags only"
                );
                (Arc::default(), Some(e.to_string()))
            }
            Err(UpstreamError::NotFound) if !local.is_empty() => (Arc::default(), None),
            Err(e) => return Err(t.upstream.failed(e)),
        };
        let merged: BTreeSet<String> = upstream.iter().cloned().chain(local).collect();
        Ok((merged.into_iter().collect(), stale))
    }

    /// The upstream's tags of `t`, from memory while `tag_ttl` runs.
    async fn upstream_tags(&self, t: &Target) -> Result<Arc<Vec<String>>, UpstreamError> {
        let ttl = t.upstream.tag_ttl;
        if let Some((at, tags)) = self.tag_lists.lock().expect("tag lists lock").get(&t.local) {
            if at.elapsed() < ttl {
                t.upstream.count(|m| &m.hits, 1);
                return Ok(tags.clone());
            }
        }
        t.upstream.count(|m| &m.misses, 1);
        let tags = Arc::new(
            t.upstream
                .client
                .list(Some(&t.remote), MAX_UPSTREAM_TAGS)
                .await?,
        );
        let mut lists = self.tag_lists.lock().expect("tag lists lock");
        if lists.len() > 10_000 {
            lists.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        lists.insert(t.local.clone(), (Instant::now(), tags.clone()));
        Ok(tags)
    }
}
