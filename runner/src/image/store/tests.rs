//! Tests of the local image store, on a real store in a temp dir.

use super::*;
use crate::image::digest::sha256_of;

fn open(dir: &tempfile::TempDir) -> ImageStore {
    ImageStore::open(&Root::new(dir.path())).unwrap()
}

fn blob(store: &ImageStore, bytes: &[u8]) -> Descriptor {
    let digest = sha256_of(bytes);
    store.put_blob_bytes(&digest, bytes).unwrap();
    Descriptor::new(::store::manifest::OCI_LAYER_TAR, digest, bytes.len() as u64)
}

/// Stores config and layers of an image and records it as `reference`.
fn image(store: &ImageStore, reference: &str, layers: &[&[u8]]) -> ImageRecord {
    let layers: Vec<Descriptor> = layers.iter().map(|l| blob(store, l)).collect();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = blob(store, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": store::manifest::OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config.digest, "size": config.size },
        "layers": layers,
    });
    let reference: Reference = reference.parse().unwrap();
    store
        .put_image(&reference, &serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    store.get_image(&reference).unwrap().unwrap()
}

fn blobs_of_record(r: &ImageRecord) -> Vec<Digest> {
    std::iter::once(r.config.clone())
        .chain(r.layers.iter().map(|l| l.digest.clone()))
        .collect()
}

#[test]
fn put_blob_bytes_refuses_wrong_digest_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let good = sha256_of(b"abc");
    let wrong = sha256_of(b"abd");
    assert!(matches!(
        store.put_blob_bytes(&wrong, b"abc"),
        Err(Error::DigestMismatch { .. })
    ));
    store.put_blob_bytes(&good, b"abc").unwrap();
    store.put_blob_bytes(&good, b"abc").unwrap();
    assert_eq!(store.read_blob(&good).unwrap(), b"abc");
    assert!(!store.has_blob(&wrong).unwrap());
}

#[test]
fn put_blob_file_stores_a_matching_file_and_drops_a_mismatching_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let store = open(&dir);
    let good = root.tmp_dir().join("good.partial");
    fs::write(&good, b"layer").unwrap();
    let digest = sha256_of(b"layer");
    store.put_blob_file(&digest, &good).unwrap();
    assert!(!good.exists());
    let mut read = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, b"layer");
    let bad = root.tmp_dir().join("bad.partial");
    fs::write(&bad, b"tampered").unwrap();
    let wanted = sha256_of(b"other");
    assert!(matches!(
        store.put_blob_file(&wanted, &bad),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(!bad.exists());
    assert!(!store.has_blob(&wanted).unwrap());
}

#[test]
fn images_map_to_store_repositories_and_tags_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let pinned = format!("localhost:5000/tools/app@{}", sha256_of(b"index"));
    let one = image(
        &store,
        "localhost:5000/library/app:latest",
        &[b"base", b"one"],
    );
    image(&store, &pinned, &[b"base", b"pinned"]);
    let (repo, tag) = locate(&"localhost:5000/library/app:latest".parse().unwrap()).unwrap();
    assert_eq!(repo.as_str(), "localhost__5000/library/app");
    assert_eq!(tag.as_str(), "latest");
    assert_eq!(one.layers.len(), 2);
    assert_eq!(one.diff_ids, blobs_of_record(&one)[1..]);
    assert_eq!(one.platform.to_string(), "linux/amd64");
    let listed: Vec<String> = store
        .list_images()
        .unwrap()
        .into_iter()
        .map(|r| r.reference)
        .collect();
    assert_eq!(
        listed,
        ["localhost:5000/library/app:latest", pinned.as_str()]
    );
    assert!(store
        .get_image(&"localhost:5000/library/app:other".parse().unwrap())
        .unwrap()
        .is_none());
}

#[test]
fn remove_image_keeps_what_another_image_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let keep = image(&store, "example.com/a:1", &[b"shared", b"only-a"]);
    let gone = image(&store, "example.com/b:1", &[b"shared", b"only-b"]);
    let b_ref: Reference = "example.com/b:1".parse().unwrap();
    let removed = store.remove_image(&b_ref).unwrap();
    assert_eq!(removed.manifest, gone.manifest);
    assert!(store.get_image(&b_ref).unwrap().is_none());
    assert!(matches!(
        store.remove_image(&b_ref),
        Err(Error::ImageNotFound { .. })
    ));
    let b: RepoName = "example.com/b".parse().unwrap();
    for d in blobs_of_record(&gone) {
        let visible = store.block_on(store.store.blob_size(&b, &d));
        assert!(
            visible.is_err(),
            "{d} still linked to the removed image's repository"
        );
    }
    for d in blobs_of_record(&keep) {
        assert!(!store.read_blob(&d).unwrap().is_empty());
    }
    assert_eq!(store.list_images().unwrap().len(), 1);
}

#[test]
fn retagging_forgets_the_old_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let old = image(&store, "example.com/a:latest", &[b"v1"]);
    let new = image(&store, "example.com/a:latest", &[b"v2"]);
    let a: RepoName = "example.com/a".parse().unwrap();
    let by_old = store::Reference::Digest(old.manifest.clone());
    assert!(store
        .block_on(store.store.manifest(&a, &by_old, false))
        .is_err());
    assert!(store
        .block_on(store.store.blob_size(&a, &old.layers[0].digest))
        .is_err());
    let found = store
        .get_image(&"example.com/a:latest".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(found.manifest, new.manifest);
}
