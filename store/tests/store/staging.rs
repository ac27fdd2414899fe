//! A local client's staging repository (the runner's `pulling`): small
//! blobs put in one commit, a manifest that moves its staged blobs into the
//! image's repository in its own transaction, and a delete that unlinks the
//! blobs only the deleted manifest used. Run by `contract` on both backends.

use store::{Algorithm, Digest, Error, Reference, RepoName, Store};

use crate::contract::{content, image};
use crate::harness::{repo, Backend};

async fn holds(store: &Store, repo: &RepoName, digest: &Digest) -> bool {
    match store.blob_size(repo, digest).await {
        Ok(_) => true,
        Err(Error::BlobUnknown { .. }) => false,
        Err(e) => panic!("blob_size: {e}"),
    }
}

pub(crate) async fn staged_blobs_move_into_the_image_with_its_manifest(backend: &Backend) {
    let store = backend.open().await;
    let (staging, images) = (repo("staging"), repo("images"));
    let stage = |what: &str| {
        let bytes = content(what);
        (Digest::of(Algorithm::Sha256, &bytes), bytes)
    };
    let (config, config_bytes) = stage("config");
    let (layer, layer_bytes) = stage("layer");
    for (d, b) in [(&config, &config_bytes), (&layer, &layer_bytes)] {
        store.put_blob_bytes(&staging, d, b.clone()).await.unwrap();
    }
    // Bytes that are not their digest are refused and not stored.
    let liar = Digest::of(Algorithm::Sha256, b"not these bytes");
    let refused = store.put_blob_bytes(&staging, &liar, content("x")).await;
    assert!(
        matches!(refused, Err(Error::DigestMismatch { .. })),
        "{refused:?}"
    );
    assert!(!store.has_blob(&liar).await.unwrap());

    // A blob neither repository holds, or one only another repository
    // holds (stored, but not reachable): refused, and nothing moves.
    let (absent, absent_bytes) = stage("never stored");
    let (elsewhere, elsewhere_bytes) = stage("another repository's");
    store
        .put_blob_bytes(&repo("other"), &elsewhere, elsewhere_bytes.clone())
        .await
        .unwrap();
    let sizes = |extra: Option<(&Digest, usize)>| {
        let mut layers = vec![(&layer, layer_bytes.len())];
        layers.extend(extra);
        image((&config, config_bytes.len()), &layers, None, None)
    };
    let tag: Reference = "v1".parse().unwrap();
    for (unreachable, len) in [
        (&absent, absent_bytes.len()),
        (&elsewhere, elsewhere_bytes.len()),
    ] {
        let refused = store
            .put_manifest_adopting(
                &images,
                &tag,
                None,
                sizes(Some((unreachable, len))),
                &staging,
            )
            .await;
        assert!(
            matches!(refused, Err(Error::ManifestBlobUnknown { .. })),
            "{unreachable}: {refused:?}"
        );
        assert!(holds(&store, &staging, &layer).await);
        assert!(!holds(&store, &images, &layer).await);
    }

    // The image: its blobs are in `images` now and no longer staged.
    let put = store
        .put_manifest_adopting(&images, &tag, None, sizes(None), &staging)
        .await
        .unwrap();
    for d in [&config, &layer] {
        assert!(
            holds(&store, &images, d).await,
            "{d} in the image's repository"
        );
        assert!(!holds(&store, &staging, d).await, "{d} still staged");
    }
    let got = store.manifest(&images, &tag, false).await.unwrap();
    assert_eq!(got.digest, put.digest);

    // Staged again (pulled twice) while the image holds it: the next image
    // that uses it takes it out of staging too.
    store
        .put_blob_bytes(&staging, &layer, layer_bytes.clone())
        .await
        .unwrap();
    let (second, second_bytes) = stage("second layer");
    store
        .put_blob_bytes(&staging, &second, second_bytes.clone())
        .await
        .unwrap();
    let v2 = sizes(Some((&second, second_bytes.len())));
    let v2_tag: Reference = "v2".parse().unwrap();
    store
        .put_manifest_adopting(&images, &v2_tag, None, v2, &staging)
        .await
        .unwrap();
    assert!(!holds(&store, &staging, &layer).await);
    assert!(!holds(&store, &staging, &second).await);

    // Deleting v1 with the blobs only it used: gone, in one commit; what
    // v2 still uses stays.
    store
        .delete_manifest_unlinking(&images, &put.digest, &[])
        .await
        .unwrap();
    let v2_digest = store
        .manifest(&images, &v2_tag, false)
        .await
        .unwrap()
        .digest;
    store
        .delete_manifest_unlinking(&images, &v2_digest, std::slice::from_ref(&second))
        .await
        .unwrap();
    assert!(matches!(
        store.manifest(&images, &v2_tag, false).await,
        Err(Error::ManifestUnknown { .. })
    ));
    assert!(!holds(&store, &images, &second).await);
    assert!(holds(&store, &images, &layer).await);
    let again = store
        .delete_manifest_unlinking(&images, &v2_digest, &[])
        .await;
    assert!(
        matches!(again, Err(Error::ManifestUnknown { .. })),
        "{again:?}"
    );
}

/// Two builds tag the same pulled image at once (stages that share a
/// base): one moves the staged blobs, the other must find them in the
/// image's repository, not fail because they left staging between its
/// looks. Two threads, each with its own runtime and store, put the same
/// manifest; the second starts a little later each round, so that in some
/// rounds its checks run while the first one commits.
pub(crate) async fn one_image_adopted_twice_at_once_succeeds_twice(backend: &Backend) {
    const ROUNDS: u64 = 150;
    let (staging, images) = (repo("staging"), repo("images"));
    let store = backend.open().await;
    let mut manifests = Vec::new();
    for round in 0..ROUNDS {
        let mut blobs = Vec::new();
        for what in ["config", "layer"] {
            let bytes = content(&format!("{what} {round}"));
            let digest = Digest::of(Algorithm::Sha256, &bytes);
            store
                .put_blob_bytes(&staging, &digest, bytes.clone())
                .await
                .unwrap();
            blobs.push((digest, bytes.len()));
        }
        let [(config, config_len), (layer, layer_len)] = &blobs[..] else {
            unreachable!()
        };
        let manifest = image((config, *config_len), &[(layer, *layer_len)], None, None);
        manifests.push((layer.clone(), manifest));
    }
    // This runtime is blocked while the threads run: nothing of it may be
    // in use meanwhile.
    drop(store);
    let start = std::sync::Barrier::new(2);
    let putter = |delay_step: u64| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(backend.open());
        let mut digests = Vec::new();
        for (round, (_, manifest)) in manifests.iter().enumerate() {
            let tag: Reference = format!("r{round}").parse().unwrap();
            start.wait();
            let until = std::time::Instant::now()
                + std::time::Duration::from_micros(delay_step * (round as u64 % 50));
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            let put = store.put_manifest_adopting(&images, &tag, None, manifest.clone(), &staging);
            match runtime.block_on(put) {
                Ok(put) => digests.push(put.digest),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        digests
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| putter(0));
        let b = s.spawn(|| putter(40));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, b);
    let store = backend.open().await;
    for (layer, _) in &manifests {
        assert!(holds(&store, &images, layer).await);
        assert!(!holds(&store, &staging, layer).await);
    }
}
