//! The image cache: local images by reference, as [`ImageStore::get_image`]
//! last read them, so that `run` finds an image it ran before without
//! opening the store (its SQLite pools, runtime and threads cost more than
//! the rest of `run -d` before the id is printed).
//!
//! `<root>/image-cache/<sha256 of the reference>.json` (see
//! [`crate::paths`]) holds the manifest's digest, the layer descriptors and
//! the image config. Every change of what a reference names drops its entry
//! ([`ImageStore::put_image`], [`ImageStore::remove_image`]). Fills and drops
//! hold `<root>/image-cache.lock`: a fill holds it across its read of the
//! store and its write, and a drop comes after the store was changed, so no
//! fill can write back what a change has just replaced. Readers take no
//! lock: entries are replaced whole (rename). An entry whose layers are not
//! all unpacked is not used (`run` then takes the slow path, which unpacks).
//!
//! [`ImageStore::get_image`]: super::ImageStore::get_image
//! [`ImageStore::put_image`]: super::ImageStore::put_image
//! [`ImageStore::remove_image`]: super::ImageStore::remove_image

use std::fs::{self, File, OpenOptions};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::ImageRecord;
use crate::image::digest::Digest;
use crate::image::oci::{Descriptor, ImageConfig, Platform};
use crate::paths::Root;

/// One entry: what [`ImageRecord`] is made of.
#[derive(Serialize, Deserialize)]
struct Entry {
    reference: String,
    manifest: Digest,
    config: Digest,
    layers: Vec<Descriptor>,
    image_config: ImageConfig,
}

/// Held while an entry is filled or dropped.
pub(super) struct CacheLock(#[allow(dead_code)] Option<Flock<File>>);

impl CacheLock {
    /// Takes the lock; without it (the root is read-only, say) nothing is cached.
    pub(super) fn take(root: &Root) -> CacheLock {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.image_cache_lock());
        CacheLock(
            file.ok()
                .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok()),
        )
    }

    fn held(&self) -> bool {
        self.0.is_some()
    }
}

/// Writes `record` as the entry of its reference. Callers hold the lock
/// from before they read `record` from the store. A failure only means no entry.
pub(super) fn fill(root: &Root, lock: &CacheLock, record: &ImageRecord) {
    if !lock.held() {
        return;
    }
    let entry = Entry {
        reference: record.reference.clone(),
        manifest: record.manifest.clone(),
        config: record.config.clone(),
        layers: record.layers.clone(),
        image_config: record.image_config.clone(),
    };
    let Ok(bytes) = serde_json::to_vec(&entry) else {
        return;
    };
    let _ = crate::fsutil::write_replace(&root.image_cache(&record.reference), &bytes, false);
}

/// Drops the entry of `reference` (after the store changed what it names).
pub(super) fn drop_entry(root: &Root, reference: &str) {
    let _lock = CacheLock::take(root);
    let _ = fs::remove_file(root.image_cache(reference));
}

/// The cached image `reference`, if it has an entry and every layer of it
/// is unpacked.
pub fn lookup(root: &Root, reference: &str) -> Option<ImageRecord> {
    let bytes = fs::read(root.image_cache(reference)).ok()?;
    let e: Entry = serde_json::from_slice(&bytes).ok()?;
    if e.reference != reference || e.layers.len() != e.image_config.rootfs.diff_ids.len() {
        return None;
    }
    let diff_ids = e.image_config.rootfs.diff_ids.clone();
    if !diff_ids.iter().all(|d| root.layer(d).is_dir()) {
        return None;
    }
    Some(ImageRecord {
        reference: e.reference,
        manifest: e.manifest,
        config: e.config,
        layers: e.layers,
        diff_ids,
        platform: Platform {
            os: e.image_config.os.clone(),
            architecture: e.image_config.architecture.clone(),
            variant: None,
        },
        image_config: e.image_config,
    })
}
