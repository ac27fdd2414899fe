//! The store's contract: what the public `Store` API promises, whatever the
//! backend. Every case runs on local files + SQLite (`local::*`, always) and
//! on S3 + PostgreSQL (`s3_postgres::*`, `#[ignore]`d: run with `--ignored`
//! and `STRATA_TEST_S3_URL` / `STRATA_TEST_PG_URL` set, one test thread,
//! as conformance/scaleout.sh does; without the environment they fail).
//!
//! Cases use unique repositories and content, so a shared backend's earlier
//! data does not matter; the GC case sweeps with no grace period, which is
//! why a shared backend runs the cases one at a time.

use std::time::Duration;

use bytes::Bytes;
use store::manifest::{OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use store::{Algorithm, Digest, Error, GcOptions, Reference, RepoName, RepoSort, Store};

use crate::harness::{body, owned_body, read_back, read_range, repo, unique, Backend};
// The outbox's cases, listed in `contract!` below with the others.
use crate::outbox::{
    outbox_claims_in_order_once_across_stores, outbox_rows_commit_with_their_write,
};
use crate::quota::{
    quota_holds_across_concurrent_stores, quota_refuses_the_byte_over_and_counts_blobs_once,
};
use crate::retention::retention_deletes_only_what_nothing_keeps;
use crate::staging::{
    one_image_adopted_twice_at_once_succeeds_twice,
    staged_blobs_move_into_the_image_with_its_manifest,
};

/// Bytes no other case or run produces.
pub(crate) fn content(what: &str) -> Bytes {
    Bytes::from(format!("{what} {}", unique()))
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

pub(crate) async fn put(store: &Store, repo: &RepoName, bytes: &Bytes) -> Digest {
    let digest = sha256(bytes);
    store
        .put_blob(
            repo,
            &digest,
            Some(bytes.len() as u64),
            owned_body(vec![bytes.clone()]),
        )
        .await
        .unwrap();
    digest
}

/// An image manifest over `config` and `layers` (digest, size), with optional
/// subject and artifact type.
pub(crate) fn image(
    config: (&Digest, usize),
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
    artifact_type: Option<&str>,
) -> Bytes {
    let desc = |media: &str, (d, n): (&Digest, usize)| serde_json::json!({"mediaType": media, "digest": d.to_string(), "size": n});
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| desc(OCI_LAYER_TAR, *l)).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] = desc(OCI_MANIFEST, s);
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = t.into();
    }
    Bytes::from(serde_json::to_vec(&m).unwrap())
}

/// A pushed image: its manifest's digest and bytes.
pub(crate) async fn push_image(store: &Store, repo: &RepoName, reference: &str) -> (Digest, Bytes) {
    let config = content("config");
    let layer = content("layer");
    let c = put(store, repo, &config).await;
    let l = put(store, repo, &layer).await;
    let bytes = image((&c, config.len()), &[(&l, layer.len())], None, None);
    let put = store
        .put_manifest(
            repo,
            &reference.parse().unwrap(),
            Some(OCI_MANIFEST),
            bytes.clone(),
            &[],
        )
        .await
        .unwrap();
    (put.digest, bytes)
}

async fn blobs_put_read_and_delete(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("blobs");
    let bytes = content("a blob of some bytes");
    let digest = put(&store, &repo, &bytes).await;
    assert!(store.has_blob(&digest).await.unwrap());
    assert_eq!(
        store.blob_size(&repo, &digest).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(read_back(&store, &digest).await, bytes);
    assert_eq!(read_range(&store, &digest, Some(2..7)).await, bytes[2..7]);
    // Another repository does not see it, and a wrong digest stores nothing.
    let other = crate::harness::repo("other");
    assert!(matches!(
        store.blob_size(&other, &digest).await,
        Err(Error::BlobUnknown { .. })
    ));
    let liar = sha256(b"something else");
    let refused = store
        .put_blob(&repo, &liar, None, owned_body(vec![content("x")]))
        .await;
    assert!(matches!(refused, Err(Error::DigestMismatch { .. })));
    assert!(!store.has_blob(&liar).await.unwrap());
    // Deleting unlinks it from the repository (the bytes wait for GC).
    store.delete_blob(&repo, &digest).await.unwrap();
    assert!(matches!(
        store.blob_size(&repo, &digest).await,
        Err(Error::BlobUnknown { .. })
    ));
    assert!(matches!(
        store.delete_blob(&repo, &digest).await,
        Err(Error::BlobUnknown { .. })
    ));
}

async fn mount_needs_a_source_that_holds_the_blob(backend: &Backend) {
    let store = backend.open().await;
    let (source, target, empty) = (repo("source"), repo("target"), repo("empty"));
    let bytes = content("mounted");
    let digest = put(&store, &source, &bytes).await;
    assert!(!store.mount_blob(&target, &digest, &empty).await.unwrap());
    assert!(matches!(
        store.blob_size(&target, &digest).await,
        Err(Error::BlobUnknown { .. })
    ));
    assert_eq!(
        store.repos_holding_blob(&digest, 10).await.unwrap(),
        vec![source.clone()]
    );
    assert!(store.mount_blob(&target, &digest, &source).await.unwrap());
    assert_eq!(
        store.blob_size(&target, &digest).await.unwrap(),
        bytes.len() as u64
    );
}

async fn uploads_chunked_resumed_elsewhere_and_cancelled(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("uploads");
    let id = store.start_upload(&repo).await.unwrap();
    assert_eq!(store.upload_offset(&repo, &id).await.unwrap(), 0);
    let salt = content("salt");
    let first = store
        .append_upload(&repo, &id, Some(0), None, owned_body(vec![salt.clone()]))
        .await
        .unwrap();
    assert_eq!(first, salt.len() as u64);
    // A chunk that does not start at the offset changes nothing.
    assert!(matches!(
        store
            .append_upload(&repo, &id, Some(1), None, body(&[b"x"]))
            .await,
        Err(Error::UploadOutOfOrder { .. })
    ));
    // Another repository cannot see the session.
    let stranger = crate::harness::repo("stranger");
    assert!(matches!(
        store.upload_offset(&stranger, &id).await,
        Err(Error::UploadUnknown { .. })
    ));
    // A second process resumes it (without this one's running digest) ...
    let elsewhere = backend.open().await;
    assert_eq!(elsewhere.upload_offset(&repo, &id).await.unwrap(), first);
    let size = elsewhere
        .append_upload(&repo, &id, Some(first), Some(6), body(&[b" tail", b"!"]))
        .await
        .unwrap();
    assert_eq!(size, first + 6);
    let mut whole = salt.to_vec();
    whole.extend_from_slice(b" tail!");
    let digest = sha256(&whole);
    // ... and a wrong digest is refused, ending the session.
    let wrong = elsewhere.finish_upload(&repo, &id, &sha256(b"no")).await;
    assert!(matches!(wrong, Err(Error::DigestMismatch { .. })));
    assert!(matches!(
        elsewhere.upload_offset(&repo, &id).await,
        Err(Error::UploadUnknown { .. })
    ));
    // Again, finished by the first process this time.
    let id = elsewhere.start_upload(&repo).await.unwrap();
    elsewhere
        .append_upload(&repo, &id, Some(0), None, owned_body(vec![salt.clone()]))
        .await
        .unwrap();
    store
        .append_upload(&repo, &id, Some(first), None, body(&[b" tail!"]))
        .await
        .unwrap();
    store.finish_upload(&repo, &id, &digest).await.unwrap();
    assert_eq!(read_back(&elsewhere, &digest).await, whole);
    // A cancelled session is gone, with its bytes.
    let id = store.start_upload(&repo).await.unwrap();
    store
        .append_upload(&repo, &id, None, None, body(&[b"abandoned"]))
        .await
        .unwrap();
    store.cancel_upload(&repo, &id).await.unwrap();
    assert!(matches!(
        store.upload_offset(&repo, &id).await,
        Err(Error::UploadUnknown { .. })
    ));
    assert!(matches!(
        store.cancel_upload(&repo, &id).await,
        Err(Error::UploadUnknown { .. })
    ));
}

async fn manifests_put_get_and_delete(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("manifests");
    let (digest, bytes) = push_image(&store, &repo, "v1").await;
    for reference in ["v1".to_owned(), digest.to_string()] {
        let m = store
            .manifest(&repo, &reference.parse().unwrap(), true)
            .await
            .unwrap();
        assert_eq!(m.digest, digest);
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.size, bytes.len() as u64);
        assert_eq!(m.bytes.as_deref(), Some(&bytes[..]));
    }
    let meta_only = store
        .manifest(&repo, &Reference::Digest(digest.clone()), false)
        .await
        .unwrap();
    assert!(meta_only.bytes.is_none());
    // A manifest over a blob the repository lacks is refused.
    let absent = sha256(&content("absent"));
    let dangling = image((&absent, 2), &[], None, None);
    assert!(matches!(
        store
            .put_manifest(
                &repo,
                &"v2".parse().unwrap(),
                Some(OCI_MANIFEST),
                dangling,
                &[]
            )
            .await,
        Err(Error::ManifestBlobUnknown { .. })
    ));
    // Deleting the tag keeps the manifest; deleting by digest removes it.
    store
        .delete_manifest(&repo, &"v1".parse().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        store.manifest(&repo, &"v1".parse().unwrap(), false).await,
        Err(Error::ManifestUnknown { .. })
    ));
    let by_digest = Reference::Digest(digest.clone());
    store.manifest(&repo, &by_digest, false).await.unwrap();
    store.delete_manifest(&repo, &by_digest).await.unwrap();
    assert!(matches!(
        store.manifest(&repo, &by_digest, false).await,
        Err(Error::ManifestUnknown { .. })
    ));
}

async fn tags_are_listed_in_pages(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("tags");
    assert!(matches!(
        store.tags(&repo, None, 10).await,
        Err(Error::NameUnknown { .. })
    ));
    let (digest, bytes) = push_image(&store, &repo, "b").await;
    for tag in ["d", "a", "c", "e"] {
        store
            .put_manifest(
                &repo,
                &tag.parse().unwrap(),
                Some(OCI_MANIFEST),
                bytes.clone(),
                &[],
            )
            .await
            .unwrap();
    }
    let all = store.tags(&repo, None, 100).await.unwrap();
    assert_eq!(&*all, ["a", "b", "c", "d", "e"]);
    assert_eq!(&*store.tags(&repo, None, 2).await.unwrap(), ["a", "b"]);
    assert_eq!(&*store.tags(&repo, Some("b"), 2).await.unwrap(), ["c", "d"]);
    assert!(store.tags(&repo, Some("e"), 2).await.unwrap().is_empty());
    store
        .delete_manifest(&repo, &Reference::Digest(digest))
        .await
        .unwrap();
    assert!(store.tags(&repo, None, 100).await.unwrap().is_empty());
}

async fn referrers_list_manifests_by_subject(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("referrers");
    let (subject, subject_bytes) = push_image(&store, &repo, "app").await;
    let config = content("signature config");
    let c = put(&store, &repo, &config).await;
    let sig = image(
        (&c, config.len()),
        &[],
        Some((&subject, subject_bytes.len())),
        Some("application/vnd.example.sig"),
    );
    let put = store
        .put_manifest(
            &repo,
            &Reference::Digest(sha256(&sig)),
            Some(OCI_MANIFEST),
            sig.clone(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(put.subject.as_ref(), Some(&subject));
    let found = store.referrers(&repo, &subject, None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, put.digest);
    assert_eq!(found[0].size, sig.len() as u64);
    assert_eq!(
        found[0].artifact_type.as_deref(),
        Some("application/vnd.example.sig")
    );
    let filtered = store
        .referrers(&repo, &subject, Some("application/other"))
        .await
        .unwrap();
    assert!(filtered.is_empty());
}

async fn gc_sweeps_only_what_nothing_references(backend: &Backend) {
    let store = backend.open().await;
    let repo = repo("gc");
    let (image, _) = push_image(&store, &repo, "kept").await;
    let loose = put(&store, &repo, &content("unreferenced")).await;
    store.delete_blob(&repo, &loose).await.unwrap();
    let stale = store.start_upload(&repo).await.unwrap();
    // GC takes what has been idle for longer than the grace period, counted
    // in whole seconds: let one go by.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let options = GcOptions {
        dry_run: true,
        grace: Duration::ZERO,
        upload_max_age: Duration::ZERO,
        untagged_max_age: None,
    };
    let dry = store.gc(&options).await.unwrap();
    assert!(dry.ran);
    assert!(dry.blobs.iter().any(|(d, _)| *d == loose));
    assert!(store.has_blob(&loose).await.unwrap(), "a dry run keeps it");
    let report = store
        .gc(&GcOptions {
            dry_run: false,
            ..options
        })
        .await
        .unwrap();
    assert!(report.blobs.iter().any(|(d, _)| *d == loose));
    assert!(!store.has_blob(&loose).await.unwrap());
    assert!(matches!(
        store.upload_offset(&repo, &stale).await,
        Err(Error::UploadUnknown { .. })
    ));
    // The tagged image and everything it references stay whole.
    let m = store
        .manifest(&repo, &"kept".parse().unwrap(), true)
        .await
        .unwrap();
    assert_eq!(m.digest, image);
    let problems = store.fsck(false).await.unwrap();
    assert!(
        !problems
            .iter()
            .any(|p| format!("{p:?}").contains(&image.to_string())),
        "{problems:?}"
    );
}

async fn unpulled_mirrored_repositories_expire(backend: &Backend) {
    let store = backend.open().await;
    let u = unique();
    let name = |n: &str| -> RepoName { format!("contract/{u}/{n}").parse().unwrap() };
    let prefix = format!("contract/{u}/up");
    let (old, recent, beside) = (name("up/old"), name("up/recent"), name("upx/old"));
    let (old_image, _) = push_image(&store, &old, "v1").await;
    push_image(&store, &recent, "v1").await;
    push_image(&store, &beside, "v1").await;
    let now = store::now();
    let long_ago = [&old, &recent, &beside].map(|r| (r.clone(), now - 100));
    store.record_pulls(&long_ago).await.unwrap();
    store.record_pulls(&[(recent.clone(), now)]).await.unwrap();
    // A time never moves back.
    store
        .record_pulls(&[(recent.clone(), now - 200)])
        .await
        .unwrap();
    assert_eq!(store.last_pull(&recent).await.unwrap(), Some(now));
    let keep_for = Duration::from_secs(50);
    let dry = store
        .expire_unpulled(&prefix, keep_for, true)
        .await
        .unwrap();
    assert_eq!(dry, Some(vec![(old.to_string(), old_image.clone())]));
    let tag: Reference = "v1".parse().unwrap();
    assert!(
        store.manifest(&old, &tag, false).await.is_ok(),
        "a dry run keeps it"
    );
    let done = store
        .expire_unpulled(&prefix, keep_for, false)
        .await
        .unwrap();
    assert_eq!(done, Some(vec![(old.to_string(), old_image)]));
    assert!(matches!(
        store.manifest(&old, &tag, false).await,
        Err(Error::ManifestUnknown { .. } | Error::NameUnknown { .. })
    ));
    assert_eq!(store.last_pull(&old).await.unwrap(), None);
    // Pulled lately, or outside the prefix: kept.
    for kept in [&recent, &beside] {
        assert!(store.manifest(kept, &tag, false).await.is_ok(), "{kept}");
    }
}

/// The browse views: summaries with search and sort, tag details with
/// sizes, totals that count a shared blob once as stored.
async fn browse_summaries_tag_details_and_totals(backend: &Backend) {
    let store = backend.open().await;
    let stem = unique();
    let name = |n: &str| -> RepoName { format!("contract/browse-{stem}/{n}").parse().unwrap() };
    let (small, big) = (name("small"), name("big_x"));
    let (digest, _) = push_image(&store, &small, "v1").await;
    let layer = Bytes::from(vec![7u8; 4096]);
    let l = put(&store, &big, &layer).await;
    let config = content("config");
    let c = put(&store, &big, &config).await;
    let bytes = image((&c, config.len()), &[(&l, layer.len())], None, None);
    for tag in ["b", "a", "c"] {
        store
            .put_manifest(
                &big,
                &tag.parse().unwrap(),
                Some(OCI_MANIFEST),
                bytes.clone(),
                &[],
            )
            .await
            .unwrap();
    }
    let before = store.totals().await.unwrap();
    // The same layer mounted into `small`: seen twice, stored once.
    assert!(store.mount_blob(&small, &l, &big).await.unwrap());
    let after = store.totals().await.unwrap();
    assert_eq!(after.stored_bytes, before.stored_bytes);
    assert_eq!(after.logical_bytes, before.logical_bytes + 4096);

    let names = |v: Vec<store::RepoSummary>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    let all = store
        .repo_summaries(&format!("contract/browse-{stem}/"), true, RepoSort::Name)
        .await
        .unwrap();
    assert_eq!(names(all.clone()), [big.to_string(), small.to_string()]);
    assert_eq!(all[0].tags, 3);
    assert_eq!(all[0].size, 4096 + config.len() as u64);
    assert_eq!(
        all[0].unique_size,
        config.len() as u64,
        "the layer is shared now"
    );
    assert!(all[0].last_push > 0);
    let by_size = store
        .repo_summaries(&stem, false, RepoSort::Size)
        .await
        .unwrap();
    // `small` holds the shared layer too, and its own config and layer.
    assert_eq!(names(by_size), [small.to_string(), big.to_string()]);
    // LIKE's wildcards are literal: `_` matches only `_`.
    let literal = store
        .repo_summaries(&format!("{stem}/big_"), false, RepoSort::Name)
        .await
        .unwrap();
    assert_eq!(names(literal), [big.to_string()]);
    let none = store
        .repo_summaries(&format!("{stem}/big%"), false, RepoSort::Name)
        .await
        .unwrap();
    assert!(none.is_empty());

    let page = store.tag_details(&big, None, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(page[0].total_size, 4096 + config.len() as u64);
    assert_eq!(page[0].media_type, OCI_MANIFEST);
    let rest = store.tag_details(&big, Some("b"), 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(store.tag_count(&big).await.unwrap(), 3);
    assert_eq!(store.tags_of(&small, &digest).await.unwrap(), ["v1"]);
    let (pushed, total) = store
        .manifest_pushed(&small, &digest)
        .await
        .unwrap()
        .unwrap();
    assert!(pushed > 0 && total > 0);
    assert_eq!(
        store.small_blob(&big, &c, 1 << 20).await.unwrap().unwrap(),
        config
    );
    assert!(store.small_blob(&big, &l, 100).await.unwrap().is_none());
    assert!(matches!(
        store.tag_details(&name("none"), None, 5).await,
        Err(store::Error::NameUnknown { .. })
    ));
}

/// Each case as a test on each backend.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&crate::harness::Backend::local()).await;
                }
            )*
        }
        mod s3_postgres {
            $(
                #[tokio::test]
                #[ignore = "needs S3 + PostgreSQL: conformance/scaleout.sh runs it with --ignored"]
                async fn $case() {
                    super::$case(&crate::harness::Backend::s3_postgres()).await;
                }
            )*
        }
    };
}

contract!(
    blobs_put_read_and_delete,
    mount_needs_a_source_that_holds_the_blob,
    uploads_chunked_resumed_elsewhere_and_cancelled,
    manifests_put_get_and_delete,
    tags_are_listed_in_pages,
    referrers_list_manifests_by_subject,
    gc_sweeps_only_what_nothing_references,
    unpulled_mirrored_repositories_expire,
    outbox_claims_in_order_once_across_stores,
    outbox_rows_commit_with_their_write,
    retention_deletes_only_what_nothing_keeps,
    browse_summaries_tag_details_and_totals,
    quota_refuses_the_byte_over_and_counts_blobs_once,
    quota_holds_across_concurrent_stores,
    staged_blobs_move_into_the_image_with_its_manifest,
    one_image_adopted_twice_at_once_succeeds_twice,
);
