//! Tag lists are cached per process by the repository's tag version: a list
//! read in one process must show tags added and deleted through another.

use std::str::FromStr;

use bytes::Bytes;
use store::{Reference, RepoName, Store, StoreConfig};

fn manifest(n: u32) -> Bytes {
    let config = format!("sha256:{:064x}", n);
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    ))
}

async fn tag(store: &Store, repo: &RepoName, name: &str, n: u32) {
    store
        .put_manifest(
            repo,
            &Reference::from_str(name).unwrap(),
            Some("application/vnd.oci.image.manifest.v1+json"),
            manifest(n),
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cached_tag_list_follows_changes_made_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::local(dir.path());
    config.allow_sparse = true;
    let reader = Store::open(&config).await.unwrap();
    let writer = Store::open(&config).await.unwrap();
    let repo = RepoName::from_str("team/app").unwrap();

    for (i, name) in ["b", "a", "c"].iter().enumerate() {
        tag(&writer, &repo, name, i as u32).await;
    }
    assert_eq!(
        *reader.tags(&repo, None, u64::MAX).await.unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(*reader.tags(&repo, Some("a"), 1).await.unwrap(), ["b"]);

    // Re-pointing a tag keeps the names; adding and deleting change them.
    tag(&writer, &repo, "b", 7).await;
    tag(&writer, &repo, "d", 8).await;
    writer
        .delete_manifest(&repo, &Reference::from_str("a").unwrap())
        .await
        .unwrap();
    assert_eq!(
        *reader.tags(&repo, None, u64::MAX).await.unwrap(),
        ["b", "c", "d"]
    );
    assert_eq!(*reader.tags(&repo, Some("c"), 10).await.unwrap(), ["d"]);
    assert!(reader.tags(&repo, Some("d"), 10).await.unwrap().is_empty());

    // Deleting a manifest by digest takes its tags with it.
    let c = reader
        .manifest(&repo, &Reference::from_str("c").unwrap(), false)
        .await
        .unwrap();
    writer
        .delete_manifest(&repo, &Reference::Digest(c.digest))
        .await
        .unwrap();
    assert_eq!(
        *reader.tags(&repo, None, u64::MAX).await.unwrap(),
        ["b", "d"]
    );
}
