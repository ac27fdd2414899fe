//! Maintenance: online garbage collection, staging cleanup and `fsck`.
//!
//! GC is mark-and-sweep over the metadata: a blob is swept when no manifest of
//! any repository references it and it has been idle for the grace period.
//! Every writer refreshes a blob's `last_access` when it uses it, and the
//! sweep re-checks each candidate in its own transaction, deleting the bytes
//! before that transaction commits; a writer reviving the blob meanwhile
//! waits on the row, then finds it gone and stores its own copy. Across replicas one GC runs at a time (a
//! PostgreSQL advisory lock).

use std::collections::HashSet;
use std::time::Duration;

use crate::meta::now;
use crate::{layout, local, objects, Digest, RepoName, Result, Store, UploadId};

/// What a GC run should do.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Only report what would be freed.
    pub dry_run: bool,
    /// Blobs idle for less than this are kept.
    pub grace: Duration,
    /// Upload sessions idle for longer than this are purged with their bytes.
    pub upload_max_age: Duration,
    /// Delete untagged, unreferenced manifests older than this (kept forever when `None`).
    pub untagged_max_age: Option<Duration>,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(24 * 3600),
            untagged_max_age: None,
        }
    }
}

/// What a GC run found and did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Untagged manifests deleted (or that would be).
    pub manifests: Vec<(String, Digest)>,
    /// Blobs swept (or that would be), with sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// Links of blobs to repositories that no longer use them, forgotten
    /// (or that would be); the blobs stay while another repository uses them.
    pub links: u64,
    /// Stale upload sessions purged.
    pub uploads: usize,
    /// Stored objects with no metadata, deleted.
    pub orphans: usize,
    /// False when another replica held the GC lock and nothing was done.
    pub ran: bool,
}

/// One problem `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Metadata lists a blob whose bytes are missing.
    Missing {
        /// The blob.
        digest: Digest,
    },
    /// Stored bytes do not hash to their digest, or have the wrong size.
    Corrupt {
        /// The blob.
        digest: Digest,
        /// Manifests (repo, digest) that reference it.
        manifests: Vec<(String, String)>,
    },
    /// Bytes stored under `blobs/` that no metadata knows.
    Orphan {
        /// The blob.
        digest: Digest,
    },
}

fn secs(d: Duration) -> i64 {
    d.as_secs().min(i64::MAX as u64) as i64
}

impl Store {
    /// Run one garbage collection.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let Some(lock) = self.meta.try_gc_lock().await? else {
            return Ok(GcReport::default());
        };
        let result = self.gc_locked(options).await;
        lock.release().await?;
        result
    }

    async fn gc_locked(&self, options: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport {
            ran: true,
            ..Default::default()
        };
        let now = now();
        if let Some(age) = options.untagged_max_age {
            for (repo, digest) in self.meta.unreferenced_manifests(now - secs(age)).await? {
                if !options.dry_run {
                    let name: RepoName = repo.parse()?;
                    self.meta
                        .delete_manifest(&name, &digest, &[], crate::Effects::default())
                        .await?;
                }
                report.manifests.push((repo, digest));
            }
        }
        let cutoff = now - secs(options.grace);
        report.links = self.meta.unused_links(cutoff, options.dry_run).await?;
        for blob in self.meta.unreferenced_blobs(cutoff).await? {
            if !options.dry_run {
                let _gate = self.gc_gate.write().await;
                let Some(sweep) = self.meta.begin_sweep(&blob.digest, cutoff).await? else {
                    continue;
                };
                self.objects
                    .delete_if_present(&layout::blob(&blob.digest))
                    .await?;
                sweep.commit().await?;
            }
            report.bytes_freed += blob.size;
            report.blobs.push((blob.digest, blob.size));
        }
        for id in self
            .meta
            .stale_uploads(now - secs(options.upload_max_age))
            .await?
        {
            if !options.dry_run {
                if let Ok(id) = id.parse::<UploadId>() {
                    self.meta.delete_upload(&id).await?;
                    self.delete_upload_dir(&id).await?;
                }
            }
            report.uploads += 1;
        }
        if !options.dry_run {
            report.orphans = self.purge_orphans(cutoff).await?;
        }
        Ok(report)
    }

    /// Delete staging objects of uploads that no longer exist, staging files
    /// no live writer holds, partial files of the local backend, and committed
    /// objects older than `cutoff` that no metadata knows (a crash between the
    /// byte commit and the metadata commit leaves those). Returns how many.
    pub async fn purge_orphans(&self, cutoff: i64) -> Result<usize> {
        let mut purged = 0;
        if let Some(root) = self.objects.local_root() {
            // Walk the directory itself: half-written multipart files of the
            // local backend do not show in listings.
            let dirs = objects::local_dir_entries(root, &layout::uploads_root()).await?;
            let live: HashSet<String> = self.meta.upload_ids().await?.into_iter().collect();
            for name in dirs.into_iter().filter(|n| !live.contains(n)) {
                let dir =
                    object_store::path::Path::from(format!("{}/{name}", layout::uploads_root()));
                let _ = self.objects.delete_upload_dir(&dir).await;
                purged += 1;
            }
            let staging = root.join(layout::staging_root().as_ref());
            purged += local::sweep_staging(staging).await?;
            let blobs = root.join(layout::blobs_root().as_ref());
            purged += local::sweep_partial_blobs(blobs).await?;
        }
        let staging = self.objects.list(&layout::uploads_root()).await?;
        // Read the live sessions after listing: a listed object's session was
        // created before it, so it is in this set unless it is over.
        let live: HashSet<String> = self.meta.upload_ids().await?.into_iter().collect();
        for meta in staging {
            let orphan =
                layout::upload_of_key(&meta.location).is_none_or(|id| !live.contains(id.as_str()));
            if orphan {
                self.objects.delete_if_present(&meta.location).await?;
                purged += 1;
            }
        }
        let known: HashSet<Digest> = self
            .meta
            .all_blobs()
            .await?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let committed = self.objects.list(&layout::blobs_root()).await?;
        for meta in committed {
            let Some(digest) = layout::digest_of_blob_key(&meta.location) else {
                continue;
            };
            if !known.contains(&digest) && meta.last_modified.timestamp() < cutoff {
                let _gate = self.gc_gate.write().await;
                if self.meta.blob_size(&digest).await?.is_none() {
                    self.objects.delete_if_present(&meta.location).await?;
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }

    /// Re-hash every blob and check metadata and bytes agree both ways.
    /// With `repair`, corrupt blobs move to `quarantine/` and leave the metadata.
    pub async fn fsck(&self, repair: bool) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let blobs = self.meta.all_blobs().await?;
        let known: HashSet<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        for blob in &blobs {
            let key = layout::blob(&blob.digest);
            let size = match self.objects.head(&key).await {
                Ok(m) => m.size,
                Err(object_store::Error::NotFound { .. }) => {
                    problems.push(Problem::Missing {
                        digest: blob.digest.clone(),
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let actual = self
                .objects
                .hash(
                    std::slice::from_ref(&key),
                    blob.digest.algorithm().hasher(),
                    None,
                )
                .await?
                .finish();
            if actual == blob.digest && size == blob.size {
                continue;
            }
            let manifests = if repair {
                self.objects
                    .rename(&key, &layout::quarantine(&blob.digest))
                    .await?;
                self.meta.quarantine_blob(&blob.digest).await?
            } else {
                self.meta.blob_referrers(&blob.digest).await?
            };
            problems.push(Problem::Corrupt {
                digest: blob.digest.clone(),
                manifests,
            });
        }
        let stored = self.objects.list(&layout::blobs_root()).await?;
        for meta in stored {
            if let Some(digest) = layout::digest_of_blob_key(&meta.location) {
                if !known.contains(&digest) {
                    problems.push(Problem::Orphan { digest });
                }
            }
        }
        Ok(problems)
    }

    /// Total bytes of stored content, for metrics.
    pub async fn stored_bytes(&self) -> Result<u64> {
        self.meta.stored_bytes().await
    }
}
