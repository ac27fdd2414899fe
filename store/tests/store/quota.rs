//! Quotas' contract cases (run on both backends by `contract!`): a write
//! that would take a quota over its budget fails and leaves nothing, a
//! blob counts once however many covered repositories hold it, crossing
//! the warning threshold puts its events in the outbox with the write,
//! usage is exact after a delete and GC, and concurrent writers through two
//! stores never overshoot the budget together.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use store::quota::Crossing;
use store::{Error, GcOptions, NewEvent, Quota, Reference, Store, Tag};

use crate::contract::{content, image, put};
use crate::harness::{owned_body, unique};

/// A quota over every repository under `prefix`, warning at `warn` bytes
/// with one event for `target`.
fn quota(prefix: &str, max_bytes: u64, warn: u64, target: &str) -> Quota {
    let target = target.to_owned();
    Quota {
        name: format!("{prefix}**"),
        prefix: prefix.to_owned(),
        covers: Arc::new(|_| true),
        max_bytes,
        warn_bytes: Some(warn),
        on_warning: Some(Arc::new(move |c: &Crossing| {
            vec![NewEvent {
                target: target.clone(),
                repo: c.repo.clone(),
                event_id: unique(),
                payload: format!("{}/{}", c.used, c.limit),
            }]
        })),
    }
}

/// `n` bytes no other case produces.
fn sized(n: usize) -> Bytes {
    let mut b = content("q").to_vec();
    b.resize(n, b'.');
    Bytes::from(b)
}

async fn try_put(store: &Store, repo: &store::RepoName, bytes: &Bytes) -> store::Result<()> {
    let digest = store::Digest::of(store::Algorithm::Sha256, bytes);
    store
        .put_blob(
            repo,
            &digest,
            Some(bytes.len() as u64),
            owned_body(vec![bytes.clone()]),
        )
        .await
}

pub(crate) async fn quota_refuses_the_byte_over_and_counts_blobs_once(
    backend: &crate::harness::Backend,
) {
    let store = backend.open().await;
    let prefix = format!("contract/{}/", unique());
    let (one, two) = (
        format!("{prefix}one").parse().unwrap(),
        format!("{prefix}two").parse().unwrap(),
    );
    let target = unique();
    store.set_quotas(vec![quota(&prefix, 100, 50, &target)]);

    let a = sized(60);
    let a_digest = put(&store, &one, &a).await;
    let events = store
        .claim_events(&unique(), Duration::from_secs(60), 1000)
        .await
        .unwrap();
    let warned: Vec<_> = events.iter().filter(|e| e.target == target).collect();
    assert_eq!(warned.len(), 1, "crossing 50 of 100 warns once");
    assert_eq!(warned[0].payload, "60/100");

    // 60 + 41 > 100: refused, and the blob is nowhere.
    let b = sized(41);
    match try_put(&store, &two, &b).await {
        Err(Error::QuotaExceeded {
            used,
            adding,
            limit,
            ..
        }) => assert_eq!((used, adding, limit), (60, 41, 100)),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    let b_digest = store::Digest::of(store::Algorithm::Sha256, &b);
    assert!(!store.has_blob(&b_digest).await.unwrap());
    // The same refused through a chunked session: the session goes too.
    let id = store.start_upload(&two).await.unwrap();
    store
        .append_upload(&two, &id, Some(0), None, owned_body(vec![b.clone()]))
        .await
        .unwrap();
    assert!(matches!(
        store.finish_upload(&two, &id, &b_digest).await,
        Err(Error::QuotaExceeded { .. })
    ));
    assert!(matches!(
        store.upload_offset(&two, &id).await,
        Err(Error::UploadUnknown { .. })
    ));

    // Exactly up to the limit is fine; a mount of a held blob adds nothing.
    let c = sized(40);
    let c_digest = put(&store, &two, &c).await;
    assert!(store.mount_blob(&two, &a_digest, &one).await.unwrap());
    let usage = store.usage(&store_quota(&prefix)).await.unwrap();
    assert_eq!((usage.used, usage.logical, usage.saving()), (100, 160, 60));
    assert_eq!(usage.repos, [(one.to_string(), 60), (two.to_string(), 100)]);

    // A manifest is bytes too: at the limit, it is refused with its tag.
    let v1 = Reference::Tag("v1".parse::<Tag>().unwrap());
    let manifest = image((&c_digest, 40), &[(&a_digest, 60)], None, None);
    let pushed = store
        .put_manifest(&two, &v1, None, manifest.clone(), &[])
        .await;
    assert!(
        matches!(pushed, Err(Error::QuotaExceeded { .. })),
        "{pushed:?}"
    );
    assert!(store.manifest(&two, &v1, false).await.is_err());

    // Raise the budget, push it, delete everything of `one`, GC: usage is
    // what `two` still holds, though `one`'s blob is kept for `two`.
    store.set_quotas(vec![quota(&prefix, 10_000, 9_000, &target)]);
    let pushed = store
        .put_manifest(&two, &v1, None, manifest.clone(), &[])
        .await
        .unwrap();
    let before = store.usage(&store_quota(&prefix)).await.unwrap();
    assert_eq!(before.used, 100 + manifest.len() as u64);
    store
        .delete_manifest(&two, &Reference::Digest(pushed.digest))
        .await
        .unwrap();
    // Links count in whole seconds: let this second pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        })
        .await
        .unwrap();
    assert!(report.links >= 2, "{report:?}");
    let after = store.usage(&store_quota(&prefix)).await.unwrap();
    assert_eq!(after.used, 0, "{after:?}");
}

/// The quota of [`quota`] without its events, for reading usage.
fn store_quota(prefix: &str) -> Quota {
    Quota {
        on_warning: None,
        ..quota(prefix, 0, 0, "")
    }
}

pub(crate) async fn quota_holds_across_concurrent_stores(backend: &crate::harness::Backend) {
    let (a, b) = (backend.open().await, backend.open().await);
    let prefix = format!("contract/{}/", unique());
    for s in [&a, &b] {
        s.set_quotas(vec![Quota {
            on_warning: None,
            ..quota(&prefix, 100, 100, "")
        }]);
    }
    let stores = [Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = stores[i % 2].clone();
        let repo: store::RepoName = format!("{prefix}r{i}").parse().unwrap();
        tasks.push(tokio::spawn(async move {
            try_put(&store, &repo, &sized(20)).await
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(Error::QuotaExceeded { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(admitted, 5, "20-byte blobs under a 100-byte budget");
    let usage = stores[0].usage(&store_quota(&prefix)).await.unwrap();
    assert_eq!(usage.used, 100);
}
