//! The pull-through mirror: a second Strata registry (or a small hostile
//! server of the test's own) as the upstream, our registry in front of it
//! with `--upstream` or `[[upstream]]`, both on loopback.
//!
//! `pull` holds the ways in (path prefix, `?ns=`, default upstream), tag
//! TTLs, read-only mirrored repositories and dedup; `failures` the outage,
//! hostile-upstream and single-flight tests; `sync` the pre-fetch command;
//! `retention` GC's `keep_for`; `tags` the merged tag lists;
//! `tls` a private CA's upstream.
//! The helpers they share are here.

mod failures;
mod pull;
mod retention;
mod sync;
mod tags;
mod tls;

use reqwest::{header, Client, StatusCode};
use serde_json::json;

use crate::harness::{push_blob, sha256, Registry, OCI_MANIFEST};

/// An image pushed to an upstream: its manifest and blobs.
pub struct Image {
    manifest: Vec<u8>,
    pub digest: String,
    config: String,
    layers: Vec<(String, Vec<u8>)>,
}

/// Push a config and `layers` to `repo:tag` of `reg`.
pub async fn push_image(reg: &Registry, repo: &str, tag: &str, layers: Vec<Vec<u8>>) -> Image {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    let config_digest = push_blob(reg, repo, config.as_bytes()).await;
    let mut pushed = Vec::new();
    for layer in layers {
        pushed.push((push_blob(reg, repo, &layer).await, layer));
    }
    let descriptors: Vec<_> = pushed
        .iter()
        .map(|(d, l)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descriptors,
    }))
    .unwrap();
    let r = Client::new()
        .put(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push {repo}:{tag}");
    Image {
        digest: sha256(&manifest),
        manifest,
        config: config_digest,
        layers: pushed,
    }
}

/// Push an index of `images` (each with its architecture, os linux) to
/// `repo:tag` of `reg`; the index bytes.
pub async fn push_index(
    reg: &Registry,
    repo: &str,
    tag: &str,
    images: &[(&Image, &str)],
) -> Vec<u8> {
    let manifests: Vec<_> = images
        .iter()
        .map(|(i, arch)| {
            json!({"mediaType": OCI_MANIFEST, "digest": i.digest, "size": i.manifest.len(),
                                "platform": {"architecture": arch, "os": "linux"}})
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": crate::harness::OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    let r = Client::new()
        .put(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header(header::CONTENT_TYPE, crate::harness::OCI_INDEX)
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push index {repo}:{tag}");
    index
}

/// A mirror of `upstream` with this configuration (`UPSTREAM` in it
/// replaced by the upstream's URL), logging to its `log` file.
pub fn mirror_with(upstream: &str, config: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config.replace("UPSTREAM", upstream)).unwrap();
    Registry::launch_owning(dir)
        .data()
        .args(["--config".as_ref(), path.as_os_str()])
        .log_file()
        .start()
}

/// `GET` a path; status, headers and body.
pub async fn get(reg: &Registry, path: &str) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let r = Client::new()
        .get(reg.url(path))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// A counter of `/metrics` (0 when absent): the sum of the lines starting with `prefix`.
pub async fn metric(reg: &Registry, prefix: &str) -> u64 {
    let text = Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Deterministic bytes that differ by `seed`.
pub fn bytes_of(seed: &str, len: usize) -> Vec<u8> {
    let block = sha256(seed.as_bytes()).into_bytes();
    block.iter().cycle().take(len).copied().collect()
}
