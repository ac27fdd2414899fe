//! `keep_for`: mirrored content not pulled for that long is collected by GC.
//!
//! Every read through the mirror (a manifest or a blob, served from the
//! store or fetched) notes the repository's pull time in memory
//! ([`Mirror::pulled`]): one map insert, no I/O. [`Mirror::flush_pulls`]
//! writes the batch to the store's `mirror_pulls` in one transaction; the
//! server does so every [`FLUSH_INTERVAL`], before each scheduled GC and at
//! shutdown. [`Mirror::expire`] (run by `registry gc` and the GC schedule
//! before the sweep) deletes the manifests and tags of every repository of
//! an upstream with `keep_for` whose last recorded pull is older; their
//! blobs then go the way of any unreferenced blob. Only repositories under
//! an upstream's prefix are ever considered: pushed ones never are.

use std::time::Duration;

use store::{Digest, Store};

use super::{Mirror, Target};

/// How often the server writes the pulls noted in memory.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

impl Mirror {
    /// Note that `t.local` was pulled now.
    pub fn pulled(&self, t: &Target) {
        if t.upstream.keep_for.is_none() {
            return;
        }
        let now = store::now();
        let mut pulls = self.pulls.lock().expect("pulls lock");
        pulls.insert(t.local.clone(), now);
    }

    /// Write the pulls noted since the last flush (one transaction). On
    /// failure they are noted again, for the next flush.
    pub async fn flush_pulls(&self, store: &Store) -> Result<(), store::Error> {
        let batch: Vec<_> = {
            let mut pulls = self.pulls.lock().expect("pulls lock");
            pulls.drain().collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.record_pulls(&batch).await {
            let mut pulls = self.pulls.lock().expect("pulls lock");
            for (repo, at) in batch {
                let slot = pulls.entry(repo).or_insert(at);
                *slot = (*slot).max(at);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Delete the manifests (and tags) of mirrored repositories not pulled
    /// for their upstream's `keep_for`; the ones deleted (or, with
    /// `dry_run`, that would be). Repositories with no recorded pull are kept.
    pub async fn expire(
        &self,
        store: &Store,
        dry_run: bool,
    ) -> Result<Vec<(String, Digest)>, store::Error> {
        let mut deleted = Vec::new();
        for u in &self.upstreams {
            let Some(keep_for) = u.keep_for else {
                continue;
            };
            if let Some(d) = store.expire_unpulled(&u.name, keep_for, dry_run).await? {
                deleted.extend(d);
            }
        }
        if !dry_run && !deleted.is_empty() {
            // Tags that were checked upstream lately are gone from the store.
            let mut checked = self.checked.lock().expect("checked lock");
            checked.retain(|(repo, _), _| !deleted.iter().any(|(r, _)| r == repo.as_str()));
        }
        Ok(deleted)
    }
}
