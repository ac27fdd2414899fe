//! Integration tests: the real `registry` binary on a loopback port, driven over HTTP.
//!
//! Each test gets its own data directory and server process. Files on disk are
//! inspected directly to prove deduplication and that rejected input leaves no trace.
//! `blobs` holds the blob and upload tests, `manifests` the manifest, listing
//! and malformed-request tests; the helpers they share are here.

mod blobs;
mod manifests;

use std::path::Path;

use reqwest::{header, Client, Response, StatusCode};
use serde_json::json;
use sha2::{Digest as _, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{push_blob, sha256, Registry, OCI_MANIFEST};

fn sha512(b: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(b)))
}

/// A registry in a fresh temp dir, with `extra` flags.
fn serve(extra: &[&str]) -> Registry {
    Registry::launch_fresh().args(extra).start()
}

/// A registry on the data in `dir` (after a [`Registry::kill`]).
fn serve_in(dir: &Path, extra: &[&str]) -> Registry {
    Registry::launch(dir).data().args(extra).start()
}

fn client() -> Client {
    Client::new()
}

/// Push a config and one layer, then an image manifest referring to them.
async fn push_image(reg: &Registry, repo: &str, tag: &str, seed: &str) -> (String, Vec<u8>) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer-{seed}");
    let cd = push_blob(reg, repo, config.as_bytes()).await;
    let ld = push_blob(reg, repo, layer.as_bytes()).await;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let r = put_manifest(reg, repo, tag, OCI_MANIFEST, &bytes).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    (sha256(&bytes), bytes)
}

async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    ct: &str,
    body: &[u8],
) -> Response {
    client()
        .put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::CONTENT_TYPE, ct)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn start_upload(reg: &Registry, repo: &str) -> String {
    let r = client()
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Send raw bytes on a fresh connection; return the response head and body as text.
/// With `cut`, close the connection right after writing, as a client that dies would.
async fn raw_request(reg: &Registry, request: &[u8], cut: bool) -> String {
    let mut s = tokio::net::TcpStream::connect(reg.addr).await.unwrap();
    s.write_all(request).await.unwrap();
    if cut {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}
