//! `registry sync`: the filters select what is pre-fetched, `--dry-run`
//! stores nothing, a second run fetches nothing again, and the synced
//! content is served with the upstream gone (an air-gapped site); of an
//! index, only the configured platforms are synced.

use std::process::Command;

use reqwest::StatusCode;

use super::{bytes_of, get, metric, push_image, push_index};
use crate::harness::Registry;

fn sync(dir: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("sync")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(extra)
        .env("STRATA_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn sync_fetches_what_the_filters_select_and_serves_it_offline() {
    let mut upstream = Registry::launch_fresh().start();
    let v1 = push_image(&upstream, "team/a", "v1", vec![bytes_of("s1", 3000)]).await;
    push_image(&upstream, "team/a", "v2", vec![bytes_of("s2", 3000)]).await;
    push_image(&upstream, "team/a", "dev", vec![bytes_of("s3", 3000)]).await;
    push_image(&upstream, "team/b", "v1", vec![bytes_of("s4", 3000)]).await;
    push_image(&upstream, "other/c", "v1", vec![bytes_of("s5", 3000)]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[[upstream]]\nname = \"up\"\nurl = \"{}\"\nrepositories = [\"team/*\"]\ntags = \"^v\"\nexclude = [\"team/b\"]\n",
            upstream.base
        ),
    )
    .unwrap();

    let (ok, out) = sync(dir.path(), &["--dry-run"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("would fetch up/team/a:v1") && out.contains("would fetch up/team/a:v2"),
        "{out}"
    );
    assert!(
        !out.contains(":dev") && !out.contains("team/b") && !out.contains("other/c"),
        "{out}"
    );
    let blobs = dir.path().join("data/storage/blobs");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).unwrap().next().is_none());

    let (ok, out) = sync(dir.path(), &["up"]);
    assert!(ok, "{out}");
    assert!(out.contains("synced 2 tags, 0 failed"), "{out}");
    // Again: everything is there, no blob is fetched twice.
    let asked = metric(&upstream, "strata_requests_total{route=\"blob\"").await;
    let (ok, out) = sync(dir.path(), &[]);
    assert!(ok, "{out}");
    assert_eq!(
        metric(&upstream, "strata_requests_total{route=\"blob\"").await,
        asked
    );
    let (ok, out) = sync(dir.path(), &["nosuch"]);
    assert!(!ok && out.contains("nosuch"), "{out}");

    upstream.terminate();
    let mirror = Registry::launch(dir.path())
        .data()
        .args([
            "--config".as_ref(),
            dir.path().join("config.toml").as_os_str(),
        ])
        .start();
    let (status, _, body) = get(&mirror, "/v2/up/team/a/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, v1.manifest.clone()));
    for (digest, bytes) in &v1.layers {
        let (status, _, body) = get(&mirror, &format!("/v2/up/team/a/blobs/{digest}")).await;
        assert_eq!((status, &body), (StatusCode::OK, bytes));
    }
    let (status, _, _) = get(&mirror, "/v2/up/team/a/manifests/dev").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = get(&mirror, "/v2/up/team/b/manifests/v1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn sync_of_an_index_fetches_only_the_configured_platforms() {
    let mut upstream = Registry::launch_fresh().start();
    let amd = push_image(
        &upstream,
        "team/multi",
        "amd64",
        vec![bytes_of("p-amd", 3000)],
    )
    .await;
    let arm = push_image(
        &upstream,
        "team/multi",
        "arm64",
        vec![bytes_of("p-arm", 3000)],
    )
    .await;
    let index = push_index(
        &upstream,
        "team/multi",
        "v1",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[[upstream]]\nname = \"up\"\nurl = \"{}\"\nrepositories = [\"team/multi\"]\ntags = \"^v1$\"\nplatforms = [\"linux/amd64\"]\n",
            upstream.base
        ),
    )
    .unwrap();
    let (ok, out) = sync(dir.path(), &[]);
    assert!(ok && out.contains("synced 1 tags, 0 failed"), "{out}");

    upstream.terminate();
    let mirror = Registry::launch(dir.path())
        .data()
        .args([
            "--config".as_ref(),
            dir.path().join("config.toml").as_os_str(),
        ])
        .start();
    let (status, _, body) = get(&mirror, "/v2/up/team/multi/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, index));
    let (status, _, body) = get(
        &mirror,
        &format!("/v2/up/team/multi/manifests/{}", amd.digest),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, amd.manifest.clone()));
    for (digest, bytes) in &amd.layers {
        let (status, _, body) = get(&mirror, &format!("/v2/up/team/multi/blobs/{digest}")).await;
        assert_eq!((status, &body), (StatusCode::OK, bytes));
    }
    let (status, _, _) = get(
        &mirror,
        &format!("/v2/up/team/multi/manifests/{}", arm.digest),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the arm64 manifest was not synced"
    );
    let (digest, _) = &arm.layers[0];
    let (status, _, _) = get(&mirror, &format!("/v2/up/team/multi/blobs/{digest}")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the arm64 layer was not synced"
    );
}
