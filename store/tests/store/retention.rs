//! The store's side of `[[retention]]` (run on both backends by
//! `contract!`): a repository's facts (tags, untagged and pulled times,
//! manifest links), deletes that happen only if nothing changed or keeps
//! the manifest meanwhile (a tag, an index, a subject), their events
//! committed with them, manifest pulls recorded in batches, and the lock.

use bytes::Bytes;
use store::manifest::{OCI_INDEX, OCI_MANIFEST};
use store::{Effects, Error, NewEvent, Reference, Store, Tag, TagFact};

use crate::contract::{content, image, push_image, put};
use crate::harness::{repo, unique, Backend};

async fn push(store: &Store, repo: &store::RepoName, reference: &str, bytes: &Bytes, media: &str) {
    store
        .put_manifest(
            repo,
            &reference.parse().unwrap(),
            Some(media),
            bytes.clone(),
            &[],
        )
        .await
        .unwrap();
}

fn fact_of<'a>(facts: &'a store::RetentionFacts, tag: &str) -> &'a TagFact {
    facts.tags.iter().find(|t| t.name.as_str() == tag).unwrap()
}

pub(crate) async fn retention_deletes_only_what_nothing_keeps(backend: &Backend) {
    let store = backend.open().await;
    let r = repo("retention");
    let (a, a_bytes) = push_image(&store, &r, "a").await;
    push(&store, &r, "b", &a_bytes, OCI_MANIFEST).await;

    // Pulls: batched, and a recorded time never moves back.
    store
        .record_manifest_pulls(&[(r.clone(), a.clone(), 2_000)])
        .await
        .unwrap();
    store
        .record_manifest_pulls(&[(r.clone(), a.clone(), 1_000)])
        .await
        .unwrap();
    let facts = store.retention_facts(&r).await.unwrap();
    assert_eq!(facts.tags.len(), 2);
    assert_eq!(facts.manifests.len(), 1);
    assert_eq!(facts.manifests[0].pulled_at, Some(2_000));

    // A tag pushed again since the facts were read stays.
    let mut stale = fact_of(&facts, "a").clone();
    stale.pushed_at -= 1;
    assert!(!store
        .untag_if_unchanged(&r, &stale, Effects::default())
        .await
        .unwrap());
    // A locked one is refused.
    let locked = |t: &Tag| t.as_str() == "a";
    let refused = store
        .untag_if_unchanged(
            &r,
            fact_of(&facts, "a"),
            Effects {
                locked: Some(&locked),
                events: &[],
            },
        )
        .await;
    assert!(
        matches!(refused, Err(Error::TagLocked { .. })),
        "{refused:?}"
    );
    // The delete and its event commit together.
    let target = unique();
    let events = [NewEvent {
        target: target.clone(),
        repo: r.to_string(),
        event_id: unique(),
        payload: "{}".into(),
    }];
    let effects = Effects {
        locked: None,
        events: &events,
    };
    assert!(store
        .untag_if_unchanged(&r, fact_of(&facts, "a"), effects)
        .await
        .unwrap());
    let claimed = store
        .claim_events(&unique(), std::time::Duration::from_secs(60), 1000)
        .await
        .unwrap();
    assert_eq!(claimed.iter().filter(|e| e.target == target).count(), 1);

    // Tag b still keeps the manifest; once it goes, the untagged time is now.
    assert!(!store
        .delete_unkept_manifest(&r, &a, Effects::default())
        .await
        .unwrap());
    let b = fact_of(&facts, "b").clone();
    assert!(store
        .untag_if_unchanged(&r, &b, Effects::default())
        .await
        .unwrap());
    let facts = store.retention_facts(&r).await.unwrap();
    assert!(facts.tags.is_empty());
    assert!(facts.manifests[0].untagged_since >= store::now() - 60);
    assert!(store
        .delete_unkept_manifest(&r, &a, Effects::default())
        .await
        .unwrap());
    assert!(store
        .retention_facts(&r)
        .await
        .unwrap()
        .manifests
        .is_empty());

    // An index keeps the manifest it lists, until it goes itself.
    let (child, child_bytes) = push_image(&store, &r, "child").await;
    let index = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.to_string(), "size": child_bytes.len()}],
        }))
        .unwrap(),
    );
    let index_digest = store::Digest::of(store::Algorithm::Sha256, &index);
    push(&store, &r, &index_digest.to_string(), &index, OCI_INDEX).await;
    let child_tag = fact_of(&store.retention_facts(&r).await.unwrap(), "child").clone();
    assert!(store
        .untag_if_unchanged(&r, &child_tag, Effects::default())
        .await
        .unwrap());
    let facts = store.retention_facts(&r).await.unwrap();
    assert_eq!(facts.links, [(index_digest.clone(), child.clone())]);
    assert!(!store
        .delete_unkept_manifest(&r, &child, Effects::default())
        .await
        .unwrap());
    assert!(store
        .delete_unkept_manifest(&r, &index_digest, Effects::default())
        .await
        .unwrap());
    assert!(store
        .delete_unkept_manifest(&r, &child, Effects::default())
        .await
        .unwrap());

    // A referrer stays while its subject does; the subject does not wait for it.
    let (subject, subject_bytes) = push_image(&store, &r, "subject").await;
    let config = content("referrer config");
    let c = put(&store, &r, &config).await;
    let referrer = image(
        (&c, config.len()),
        &[],
        Some((&subject, subject_bytes.len())),
        Some("application/example"),
    );
    let referrer_digest = store::Digest::of(store::Algorithm::Sha256, &referrer);
    push(
        &store,
        &r,
        &referrer_digest.to_string(),
        &referrer,
        OCI_MANIFEST,
    )
    .await;
    let facts = store.retention_facts(&r).await.unwrap();
    let m = facts
        .manifests
        .iter()
        .find(|m| m.digest == referrer_digest)
        .unwrap();
    assert_eq!(m.subject.as_ref(), Some(&subject));
    assert!(!store
        .delete_unkept_manifest(&r, &referrer_digest, Effects::default())
        .await
        .unwrap());
    let subject_tag = fact_of(&facts, "subject").clone();
    assert!(store
        .untag_if_unchanged(&r, &subject_tag, Effects::default())
        .await
        .unwrap());
    assert!(store
        .delete_unkept_manifest(&r, &subject, Effects::default())
        .await
        .unwrap());
    assert!(store
        .delete_unkept_manifest(&r, &referrer_digest, Effects::default())
        .await
        .unwrap());

    // Pulls of manifests gone another way are forgotten.
    let (gone, _) = push_image(&store, &r, "gone").await;
    store
        .record_manifest_pulls(&[(r.clone(), gone.clone(), 5)])
        .await
        .unwrap();
    store
        .delete_manifest(&r, &Reference::Digest(gone))
        .await
        .unwrap();
    assert!(store.forget_stale_pulls().await.unwrap() >= 1);

    // One retention pass at a time across the stores sharing a database.
    let other = backend.open().await;
    let lock = store.try_retention_lock().await.unwrap().unwrap();
    let second = other.try_retention_lock().await.unwrap();
    assert_eq!(
        second.is_none(),
        backend.config.database.starts_with("postgres")
    );
    if let Some(l) = second {
        l.release().await.unwrap();
    }
    lock.release().await.unwrap();
    assert!(other.try_retention_lock().await.unwrap().is_some());
}
