//! The outbox's contract cases (run on both backends by `contract!`): a
//! claim takes the oldest pending event of each (target, repository) with
//! a lease, two stores on one database never claim the same row at once,
//! failures retry or go dead, and an event commits with its write or not
//! at all (a locked tag refuses the write and its event).

use std::collections::HashSet;
use std::time::Duration;

use store::manifest::OCI_MANIFEST;
use store::{Effects, Error, NewEvent, OutboxEvent, Reference, Store, Tag};

use crate::contract::{content, image, put};
use crate::harness::{repo, unique, Backend};

fn event(target: &str, repo: &str, id: &str) -> NewEvent {
    NewEvent {
        target: target.to_owned(),
        repo: repo.to_owned(),
        event_id: id.to_owned(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    }
}

/// The ids of `target`'s rows among what `store` claims now.
async fn claim(store: &Store, target: &str) -> Vec<OutboxEvent> {
    let all = store
        .claim_events(&unique(), Duration::from_secs(60), 1000)
        .await
        .unwrap();
    all.into_iter().filter(|e| e.target == target).collect()
}

fn ids(events: &[OutboxEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

pub(crate) async fn outbox_claims_in_order_once_across_stores(backend: &Backend) {
    let (a, b) = (backend.open().await, backend.open().await);
    let t = unique();
    a.enqueue_events(&[
        event(&t, "r1", "e1"),
        event(&t, "r1", "e2"),
        event(&t, "r2", "f1"),
        event(&t, "r1", "e3"),
    ])
    .await
    .unwrap();
    // The oldest of each repository, once: the other store sees them leased.
    let first = claim(&a, &t).await;
    assert_eq!(ids(&first), ["e1", "f1"]);
    assert!(claim(&b, &t).await.is_empty());
    a.event_delivered(first[0].seq).await.unwrap();
    let second = claim(&b, &t).await;
    assert_eq!(ids(&second), ["e2"]);
    // A failure due now comes back with its count; a dead one stops blocking.
    a.event_failed(first[1].seq, Some(store::now_ms() - 1), "HTTP 500")
        .await
        .unwrap();
    b.event_failed(second[0].seq, None, "HTTP 410")
        .await
        .unwrap();
    let third = claim(&a, &t).await;
    assert_eq!(ids(&third), ["f1", "e3"]);
    assert_eq!(third[0].attempts, 1);
    let dead = a.dead_events(1000).await.unwrap();
    let dead: Vec<_> = dead.into_iter().filter(|e| e.target == t).collect();
    assert_eq!(ids(&dead), ["e2"]);
    assert_eq!(dead[0].last_error.as_deref(), Some("HTTP 410"));

    // Many repositories, two stores claiming at once: each row once.
    let t2 = unique();
    let events: Vec<NewEvent> = (0..40)
        .map(|i| event(&t2, &format!("repo{i}"), &format!("g{i}")))
        .collect();
    a.enqueue_events(&events).await.unwrap();
    let mut seen = HashSet::new();
    for _ in 0..40 {
        let (x, y) = tokio::join!(claim(&a, &t2), claim(&b, &t2));
        for e in x.iter().chain(&y) {
            assert!(
                seen.insert(e.event_id.clone()),
                "{} claimed twice",
                e.event_id
            );
        }
        if seen.len() == 40 {
            break;
        }
    }
    assert_eq!(seen.len(), 40);
}

pub(crate) async fn outbox_rows_commit_with_their_write(backend: &Backend) {
    let store = backend.open().await;
    let r = repo("outbox");
    let t = unique();
    let image_of = |seed: &str| {
        let (config, layer) = (
            content(&format!("config {seed}")),
            content(&format!("layer {seed}")),
        );
        (config, layer)
    };
    let mut manifests = Vec::new();
    for seed in ["a", "b"] {
        let (config, layer) = image_of(seed);
        let c = put(&store, &r, &config).await;
        let l = put(&store, &r, &layer).await;
        manifests.push(image((&c, config.len()), &[(&l, layer.len())], None, None));
    }
    let v1: Reference = "v1".parse().unwrap();
    let locked = |tag: &Tag| tag.as_str().starts_with('v');
    let push = |bytes: bytes::Bytes, id: &'static str| {
        let events = vec![event(&t, r.as_str(), id)];
        let store = &store;
        let r = &r;
        let v1 = &v1;
        async move {
            store
                .put_manifest_with(
                    r,
                    v1,
                    Some(OCI_MANIFEST),
                    bytes,
                    &[],
                    Effects {
                        locked: Some(&locked),
                        events: &events,
                    },
                )
                .await
        }
    };
    let pushed = push(manifests[0].clone(), "push-a").await.unwrap();
    // The same manifest again is fine; another one is refused, with its event.
    push(manifests[0].clone(), "push-a-again").await.unwrap();
    let refused = push(manifests[1].clone(), "push-b").await;
    assert!(
        matches!(&refused, Err(Error::TagLocked { tag, .. }) if tag == "v1"),
        "{refused:?}"
    );
    let no_events: &[NewEvent] = &[];
    for reference in [v1.clone(), Reference::Digest(pushed.digest.clone())] {
        let e = store
            .delete_manifest_with(
                &r,
                &reference,
                Effects {
                    locked: Some(&locked),
                    events: no_events,
                },
            )
            .await;
        assert!(
            matches!(e, Err(Error::TagLocked { .. })),
            "{reference}: {e:?}"
        );
    }
    let m = store.manifest(&r, &v1, false).await.unwrap();
    assert_eq!(m.digest, pushed.digest);
    // Only the committed writes' events are in the outbox, in order.
    let mut got = Vec::new();
    for _ in 0..3 {
        for e in claim(&store, &t).await {
            got.push(e.event_id.clone());
            store.event_delivered(e.seq).await.unwrap();
        }
    }
    assert_eq!(got, ["push-a", "push-a-again"]);
}
