//! `keep_for`: GC collects mirrored content not pulled for that long, keeps
//! what was pulled lately, and never touches pushed repositories. The real
//! `registry gc` command runs against the serving mirror's data.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use super::{bytes_of, get, mirror_with, push_image, Image};
use crate::harness::Registry;

/// GET the manifest by tag and every blob of `image` under `repo`.
async fn pull(reg: &Registry, repo: &str, image: &Image) {
    let (status, _, body) = get(reg, &format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    let mut blobs = vec![image.config.clone()];
    blobs.extend(image.layers.iter().map(|(d, _)| d.clone()));
    for d in blobs {
        let (status, _, _) = get(reg, &format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(status, StatusCode::OK, "{repo} {d}");
    }
}

fn blob_file(reg: &Registry, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    reg.dir
        .join(format!("data/storage/blobs/sha256/{}/{hex}", &hex[..2]))
}

#[tokio::test]
async fn keep_for_collects_what_was_not_pulled_and_keeps_the_rest() {
    let upstream = Registry::launch_fresh().start();
    let old = push_image(
        &upstream,
        "team/old",
        "v1",
        vec![bytes_of("keep-old", 3000)],
    )
    .await;
    let recent = push_image(
        &upstream,
        "team/recent",
        "v1",
        vec![bytes_of("keep-new", 3000)],
    )
    .await;
    let mirror = mirror_with(
        &upstream.base,
        "[gc]\ngrace_secs = 0\n\n[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\nkeep_for = \"6s\"\n",
    );
    // A pushed repository of the mirror itself, never pulled.
    let local = push_image(
        &mirror,
        "local/app",
        "v1",
        vec![bytes_of("keep-local", 3000)],
    )
    .await;
    pull(&mirror, "up/team/old", &old).await;
    pull(&mirror, "up/team/recent", &recent).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    pull(&mirror, "up/team/recent", &recent).await;
    // The pull times are written every 2 s.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["gc", "--config"])
        .arg(mirror.dir.join("config.toml"))
        .arg("--data")
        .arg(mirror.dir.join("data"))
        .env("STRATA_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("deleted manifest up/team/old@{}", old.digest)),
        "{text}"
    );
    let (old_layer, _) = &old.layers[0];
    assert!(
        text.contains(&format!("deleted blob {old_layer}")),
        "{text}"
    );
    assert!(!blob_file(&mirror, old_layer).exists());
    for kept in [&recent, &local] {
        assert!(!text.contains(&kept.digest), "{text}");
        assert!(blob_file(&mirror, &kept.layers[0].0).exists());
    }
    // What was pulled lately, and the pushed repository, are served as before.
    let (status, _, _) = get(&mirror, "/v2/local/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    pull(&mirror, "up/team/recent", &recent).await;
    // The collected image is fetched again on its next pull (the first
    // client gets it before the store's commit; a second one waits for it).
    pull(&mirror, "up/team/old", &old).await;
    pull(&mirror, "up/team/old", &old).await;
    assert!(blob_file(&mirror, old_layer).exists());
}
