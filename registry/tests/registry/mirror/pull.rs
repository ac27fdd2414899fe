//! Pulls through the mirror: the three ways in, tag TTLs, read-only
//! mirrored repositories, dedup with pushed content.

use reqwest::{Client, StatusCode};

use super::{bytes_of, get, metric, mirror_with, push_image, push_index};
use crate::harness::{error_code, push_blob, sha256, Registry};

#[tokio::test]
async fn path_prefix_pulls_manifest_and_blobs_and_digests_stay_local() {
    let upstream = Registry::launch_fresh().start();
    let image = push_image(
        &upstream,
        "team/app",
        "v1",
        vec![bytes_of("a", 300_000), bytes_of("b", 10)],
    )
    .await;
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();

    let (status, headers, body) = get(&mirror, "/v2/up/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, image.manifest);
    assert_eq!(headers["docker-content-digest"], image.digest.as_str());
    for (digest, bytes) in &image.layers {
        let (status, _, body) = get(&mirror, &format!("/v2/up/team/app/blobs/{digest}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body, bytes);
    }
    let (status, _, _) = get(&mirror, &format!("/v2/up/team/app/blobs/{}", image.config)).await;
    assert_eq!(status, StatusCode::OK);

    // Served from the store now: the upstream is not asked about digests.
    let asked = metric(&upstream, "strata_requests_total{route=\"blob\"").await;
    let asked_manifests = metric(&upstream, "strata_requests_total{route=\"manifest\"").await;
    let (status, _, body) = get(
        &mirror,
        &format!("/v2/up/team/app/manifests/{}", image.digest),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    let (digest, bytes) = &image.layers[0];
    let (status, _, body) = get(&mirror, &format!("/v2/up/team/app/blobs/{digest}")).await;
    assert_eq!((status, &body), (StatusCode::OK, bytes));
    assert_eq!(
        metric(&upstream, "strata_requests_total{route=\"blob\"").await,
        asked
    );
    assert_eq!(
        metric(&upstream, "strata_requests_total{route=\"manifest\"").await,
        asked_manifests
    );
    assert!(metric(&mirror, "strata_mirror_hits_total{upstream=\"up\"}").await >= 2);

    // Something the upstream does not have is the spec's 404.
    let (status, _, body) = get(&mirror, "/v2/up/team/app/manifests/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn ns_parameter_and_default_upstream_reach_the_same_copy() {
    let upstream = Registry::launch_fresh().start();
    let image = push_image(&upstream, "library/tool", "1.0", vec![bytes_of("ns", 1000)]).await;
    let mirror = mirror_with(
        &upstream.base,
        "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\nregistry = \"up.example\"\ndefault = true\n",
    );
    // containerd's hosts.toml mirror: the name as asked, the registry in ?ns=.
    let (status, _, body) = get(&mirror, "/v2/library/tool/manifests/1.0?ns=up.example").await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    // Docker's registry-mirrors: no prefix, no ns; the name is not local.
    let (status, _, body) = get(&mirror, "/v2/library/tool/manifests/1.0").await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    let (digest, bytes) = &image.layers[0];
    let (status, _, body) = get(&mirror, &format!("/v2/library/tool/blobs/{digest}")).await;
    assert_eq!((status, &body), (StatusCode::OK, bytes));
    // One copy, under the prefix: the path prefix finds it without asking.
    let (status, _, body) = get(&mirror, &format!("/v2/up/library/tool/blobs/{digest}")).await;
    assert_eq!((status, &body), (StatusCode::OK, bytes));
    assert_eq!(
        metric(&mirror, "strata_mirror_misses_total{upstream=\"up\"}").await,
        2
    );

    // A push to a new name stays local, and then that name is local.
    let mine = push_image(&mirror, "mine/app", "v1", vec![bytes_of("mine", 64)]).await;
    let (status, _, body) = get(&mirror, "/v2/mine/app/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, mine.manifest));
    // An ns that names no upstream is ours.
    let (status, _, _) = get(&mirror, "/v2/mine/app/manifests/v1?ns=elsewhere.example").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn push_into_a_mirrored_repository_is_denied() {
    let upstream = Registry::launch_fresh().start();
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    let data = b"not welcome";
    let r = Client::new()
        .post(mirror.url(&format!(
            "/v2/up/team/app/blobs/uploads/?digest={}",
            sha256(data)
        )))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().await.unwrap();
    assert!(text.contains("DENIED") && text.contains("mirror"), "{text}");
    let r = Client::new()
        .put(mirror.url("/v2/up/team/app/manifests/v1"))
        .header("content-type", crate::harness::OCI_MANIFEST)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DENIED");
    let r = Client::new()
        .delete(mirror.url("/v2/up/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DENIED");
}

#[tokio::test]
async fn retagged_upstream_tag_is_seen_after_its_ttl_not_before() {
    let upstream = Registry::launch_fresh().start();
    let first = push_image(&upstream, "team/app", "latest", vec![bytes_of("one", 100)]).await;
    let config = "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\ntag_ttl = \"TTL\"\n";
    let long = mirror_with(&upstream.base, &config.replace("TTL", "1h"));
    let short = mirror_with(&upstream.base, &config.replace("TTL", "1s"));
    for m in [&long, &short] {
        let (_, headers, _) = get(m, "/v2/up/team/app/manifests/latest").await;
        assert_eq!(headers["docker-content-digest"], first.digest.as_str());
    }
    let second = push_image(&upstream, "team/app", "latest", vec![bytes_of("two", 100)]).await;
    assert_ne!(first.digest, second.digest);

    let asked = metric(&upstream, "strata_requests_total{route=\"manifest\"").await;
    let (_, headers, _) = get(&long, "/v2/up/team/app/manifests/latest").await;
    assert_eq!(headers["docker-content-digest"], first.digest.as_str());
    assert_eq!(
        metric(&upstream, "strata_requests_total{route=\"manifest\"").await,
        asked
    );

    // Past the TTL (a lower bound, whatever the machine's speed).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, headers, body) = get(&short, "/v2/up/team/app/manifests/latest").await;
    assert_eq!(headers["docker-content-digest"], second.digest.as_str());
    assert_eq!(body, second.manifest);
}

#[tokio::test]
async fn a_layer_pushed_and_mirrored_is_stored_once() {
    let upstream = Registry::launch_fresh().start();
    let shared = bytes_of("shared-base", 200_000);
    let image = push_image(
        &upstream,
        "team/app",
        "v1",
        vec![shared.clone(), bytes_of("own", 500)],
    )
    .await;
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    // The pushed copy first: the mirror links it (after the upstream
    // confirmed it holds the blob) instead of fetching it.
    let pushed = push_blob(&mirror, "mine/base", &shared).await;
    let (status, _, body) = get(&mirror, &format!("/v2/up/team/app/blobs/{pushed}")).await;
    assert_eq!((status, body), (StatusCode::OK, shared.clone()));
    assert_eq!(
        metric(&mirror, "strata_mirror_fetched_bytes_total").await,
        0
    );
    // The other way round: mirrored first, pushed after, one file.
    let (own, own_bytes) = &image.layers[1];
    let (status, _, _) = get(&mirror, &format!("/v2/up/team/app/blobs/{own}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        metric(&mirror, "strata_mirror_fetched_bytes_total").await,
        own_bytes.len() as u64
    );
    push_blob(&mirror, "mine/other", own_bytes).await;
    for digest in [&pushed, own] {
        let hex = digest.trim_start_matches("sha256:");
        let files: Vec<_> = mirror
            .stored_files("")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(hex))
            .collect();
        assert_eq!(files.len(), 1, "{digest}: {files:?}");
    }
}

#[tokio::test]
async fn upstream_behind_a_login_is_pulled_with_the_token_dance() {
    let upstream = Registry::launch_fresh().start();
    let image = push_image(&upstream, "team/app", "v1", vec![bytes_of("private", 4000)]).await;
    let dir = upstream.kill();
    let _cleanup = Cleanup(dir.clone());
    crate::harness::add_user(&dir, "puller");
    let upstream = Registry::launch(&dir)
        .data()
        .args(["--htpasswd", "htpasswd"])
        .start();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "puller-pw\n").unwrap();
    let config = format!(
        "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\nusername = \"puller\"\npassword_file = \"{}\"\n",
        secret.path().display()
    );
    let mut mirror = mirror_with(&upstream.base, &config);
    let (status, _, body) = get(&mirror, "/v2/up/team/app/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    for (digest, bytes) in &image.layers {
        let (status, _, body) = get(&mirror, &format!("/v2/up/team/app/blobs/{digest}")).await;
        assert_eq!((status, &body), (StatusCode::OK, bytes));
    }
    mirror.terminate();
    assert!(!mirror.log().contains("puller-pw"));

    // Without credentials the upstream refuses: DENIED, naming the upstream only.
    let anonymous = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    let (status, _, body) = get(&anonymous, "/v2/up/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("DENIED") && !text.contains(&upstream.base),
        "{text}"
    );
}

/// Removes a directory a killed registry left behind.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn an_index_brings_only_the_platform_manifests_pulled() {
    let mut upstream = Registry::launch_fresh().start();
    let amd = push_image(&upstream, "team/multi", "amd64", vec![bytes_of("amd", 100)]).await;
    let arm = push_image(&upstream, "team/multi", "arm64", vec![bytes_of("arm", 100)]).await;
    let index = push_index(
        &upstream,
        "team/multi",
        "latest",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    let r = Client::new()
        .get(mirror.url("/v2/up/team/multi/manifests/latest"))
        .header("accept", crate::harness::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), index);
    let (status, _, _) = get(
        &mirror,
        &format!("/v2/up/team/multi/manifests/{}", amd.digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The upstream gone: the platform pulled is there, the other never was.
    upstream.terminate();
    let (status, _, body) = get(
        &mirror,
        &format!("/v2/up/team/multi/manifests/{}", amd.digest),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, amd.manifest));
    let (status, _, _) = get(
        &mirror,
        &format!("/v2/up/team/multi/manifests/{}", arm.digest),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn referrers_of_a_mirrored_manifest_are_fetched_on_demand() {
    let upstream = Registry::launch_fresh().start();
    let image = push_image(&upstream, "team/app", "v1", vec![bytes_of("signed", 100)]).await;
    let empty = push_blob(&upstream, "team/app", b"{}").await;
    let sig = push_blob(&upstream, "team/app", b"signature").await;
    let referrer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": crate::harness::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 9}],
        "subject": {"mediaType": crate::harness::OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len()},
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    let r = Client::new()
        .put(upstream.url(&format!("/v2/team/app/manifests/{referrer_digest}")))
        .header("content-type", crate::harness::OCI_MANIFEST)
        .body(referrer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    let (status, _, body) = get(
        &mirror,
        &format!("/v2/up/team/app/referrers/{}", image.digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, std::slice::from_ref(&referrer_digest));
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    let (status, _, _) = get(
        &mirror,
        &format!("/v2/up/team/app/manifests/{referrer_digest}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
