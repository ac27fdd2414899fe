//! The store's in-memory caches, each bounded and each only ever an
//! optimization: a miss (or a restart) costs a read, never a wrong answer.
//!
//! - [`Hashers`]: running digests of uploads whose chunks all passed through
//!   this process, so a chunked upload finishes without reading its bytes back;
//! - [`TagLists`]: whole tag lists by repository, filed under the tag version
//!   they were read at;
//! - [`ManifestBytes`]: verified manifest bytes by digest (immutable content).
//!
//! Whether something is visible is always the metadata's answer, never a cache's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{Algorithm, Digest, Hasher, UploadId};

/// Repositories whose tag lists are kept in memory at once (the cache is
/// emptied when full: the lists that matter come back on their next read).
const TAG_CACHE_REPOS: usize = 256;
/// Longer tag lists are not cached, which bounds the cache's memory.
const TAG_CACHE_MAX_TAGS: usize = 100_000;
/// Bytes of manifests kept in memory at most (manifests are a few KiB).
const MANIFEST_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Running SHA-256 of uploads, keyed by upload, with the offset each covers.
#[derive(Default)]
pub struct Hashers(Mutex<HashMap<UploadId, (u64, Hasher)>>);

impl Hashers {
    /// The hasher that has seen exactly the first `offset` bytes of `id`
    /// (a fresh one at offset 0), removed from the cache; `None` when this
    /// process did not see them all (then the bytes must be read back).
    pub fn take(&self, id: &UploadId, offset: u64) -> Option<Hasher> {
        let cached = self.0.lock().expect("hasher map poisoned").remove(id);
        match cached {
            Some((at, h)) if at == offset => Some(h),
            _ if offset == 0 => Some(Algorithm::Sha256.hasher()),
            _ => None,
        }
    }

    /// File `hasher` (if any) as covering the first `offset` bytes of `id`.
    pub fn put(&self, id: &UploadId, offset: u64, hasher: Option<Hasher>) {
        if let Some(h) = hasher {
            self.0
                .lock()
                .expect("hasher map poisoned")
                .insert(id.clone(), (offset, h));
        }
    }

    /// Forget `id`'s hasher.
    pub fn forget(&self, id: &UploadId) {
        self.0.lock().expect("hasher map poisoned").remove(id);
    }
}

/// A repository's whole tag list and the tag version it was read at.
type VersionedTags = (i64, Arc<Vec<String>>);

/// Whole, sorted tag lists by repository.
#[derive(Default)]
pub struct TagLists(Mutex<HashMap<String, VersionedTags>>);

impl TagLists {
    /// The cached list of `repo`, if it was read at `version`.
    pub fn get(&self, repo: &str, version: i64) -> Option<Arc<Vec<String>>> {
        let cached = self
            .0
            .lock()
            .expect("tag cache poisoned")
            .get(repo)
            .cloned();
        match cached {
            Some((v, tags)) if v == version => Some(tags),
            _ => None,
        }
    }

    /// File `tags`, read at `version`, under `repo` (unless the list is too long).
    pub fn insert(&self, repo: &str, version: i64, tags: &Arc<Vec<String>>) {
        if tags.len() > TAG_CACHE_MAX_TAGS {
            return;
        }
        let mut cache = self.0.lock().expect("tag cache poisoned");
        if cache.len() >= TAG_CACHE_REPOS {
            cache.clear();
        }
        cache.insert(repo.to_owned(), (version, Arc::clone(tags)));
    }
}

/// Verified manifest bytes by digest, and their total size.
#[derive(Default)]
pub struct ManifestBytes(Mutex<(HashMap<Digest, Bytes>, usize)>);

impl ManifestBytes {
    /// The bytes of `digest`, if cached.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.0
            .lock()
            .expect("manifest cache poisoned")
            .0
            .get(digest)
            .cloned()
    }

    /// Keep `bytes`, which the caller verified hash to `digest` (the cache
    /// is emptied first when it would grow past `MANIFEST_CACHE_BYTES`).
    pub fn insert(&self, digest: &Digest, bytes: &Bytes) {
        let mut cache = self.0.lock().expect("manifest cache poisoned");
        let (map, held) = &mut *cache;
        if *held + bytes.len() > MANIFEST_CACHE_BYTES {
            map.clear();
            *held = 0;
        }
        if map.insert(digest.clone(), bytes.clone()).is_none() {
            *held += bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hasher_is_reused_only_at_the_offset_it_covers() {
        let hashers = Hashers::default();
        let id = UploadId::new();
        let mut h = hashers.take(&id, 0).expect("a fresh hasher at offset 0");
        h.update(b"abc");
        hashers.put(&id, 3, Some(h));
        assert!(hashers.take(&id, 5).is_none(), "wrong offset");
        assert!(hashers.take(&id, 3).is_none(), "taken (and dropped) above");
        hashers.put(&id, 3, Some(Algorithm::Sha256.hasher()));
        hashers.forget(&id);
        assert!(hashers.take(&id, 3).is_none());
    }

    #[test]
    fn a_tag_list_is_served_only_at_its_version() {
        let lists = TagLists::default();
        let tags = Arc::new(vec!["a".to_owned()]);
        lists.insert("repo", 7, &tags);
        assert_eq!(lists.get("repo", 7).as_deref(), Some(&*tags));
        assert!(lists.get("repo", 8).is_none());
        assert!(lists.get("other", 7).is_none());
    }

    #[test]
    fn manifest_bytes_stay_within_the_budget() {
        let cache = ManifestBytes::default();
        let big = Bytes::from(vec![0u8; MANIFEST_CACHE_BYTES / 2 + 1]);
        let a = Digest::of(Algorithm::Sha256, b"a");
        let b = Digest::of(Algorithm::Sha256, b"b");
        cache.insert(&a, &big);
        assert!(cache.get(&a).is_some());
        cache.insert(&b, &big);
        assert!(cache.get(&a).is_none(), "emptied to make room");
        assert!(cache.get(&b).is_some());
    }
}
