//! Integration tests: the real `registry` binary on a loopback port, driven over HTTP.
//!
//! Each test gets its own data directory and server process. Files on disk are
//! inspected directly to prove deduplication and that rejected input leaves no trace.

use std::path::Path;

use reqwest::{header, Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{error_code, push_blob, sha256, Registry, OCI_INDEX, OCI_MANIFEST};

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

#[tokio::test]
async fn base_endpoint_and_every_response_carry_the_api_version() {
    let reg = serve(&[]);
    for path in ["/v2/", "/v2", "/v2/nope/tags/list", "/not-v2", "/v2/a/b"] {
        let r = client().get(reg.url(path)).send().await.unwrap();
        assert_eq!(
            r.headers()["docker-distribution-api-version"],
            "registry/2.0",
            "{path}"
        );
    }
    let r = client().get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn blob_get_head_and_range_reads() {
    let reg = serve(&[]);
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&reg, "a/b", &data).await;
    let r = client()
        .head(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "2000");
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = client()
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data);
    for (range, want, cr) in [
        ("bytes=500-1499", 500..1500, "bytes 500-1499/2000"),
        ("bytes=500-", 500..2000, "bytes 500-1999/2000"),
        ("bytes=-500", 1500..2000, "bytes 1500-1999/2000"),
    ] {
        let r = client()
            .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
            .header(header::RANGE, range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.headers()["content-range"], cr);
        assert_eq!(r.bytes().await.unwrap(), data[want]);
    }
    let r = client()
        .get(reg.url(&format!("/v2/a/b/blobs/{d}")))
        .header(header::RANGE, "bytes=2000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */2000");
    let other = sha256(b"never pushed");
    let r = client()
        .get(reg.url(&format!("/v2/a/b/blobs/{other}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_out_of_order_is_416_and_session_stays_valid() {
    let reg = serve(&[]);
    let data = b"0123456789abcdefghij".to_vec();
    let loc = start_upload(&reg, "chunks").await;
    let r = client()
        .patch(reg.url(&loc))
        .header(header::CONTENT_RANGE, "0-9")
        .body(data[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-9");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // A chunk that skips ahead is refused with 416 and the current range.
    let r = client()
        .patch(reg.url(&loc))
        .header(header::CONTENT_RANGE, "15-19")
        .body(data[15..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-9");
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-9");
    let r = client()
        .patch(reg.url(&loc))
        .header(header::CONTENT_RANGE, "10-14")
        .body(data[10..15].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["range"], "0-14");
    // The last chunk rides on the PUT.
    let d = sha256(&data);
    let r = client()
        .put(reg.url(&format!("{loc}?digest={d}")))
        .header(header::CONTENT_RANGE, "15-19")
        .body(data[15..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/chunks/blobs/{d}").as_str()
    );
    let got = client()
        .get(reg.url(&format!("/v2/chunks/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
    assert!(reg.stored_files("uploads").is_empty(), "staging is cleaned");
}

#[tokio::test]
async fn streamed_patch_then_put_and_cancel() {
    let reg = serve(&[]);
    let data = vec![7u8; 3 * 1024 * 1024 + 17];
    let loc = start_upload(&reg, "stream").await;
    let stream = futures::stream::iter(
        data.chunks(65536)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = client()
        .patch(reg.url(&loc))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let d = sha256(&data);
    let r = client()
        .put(reg.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let loc = start_upload(&reg, "stream").await;
    client()
        .patch(reg.url(&loc))
        .body("partial")
        .send()
        .await
        .unwrap();
    let r = client().delete(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert!(reg.stored_files("uploads").is_empty());
}

#[tokio::test]
async fn cross_repository_and_anonymous_mounts() {
    let reg = serve(&[]);
    let d = push_blob(&reg, "src", b"shared layer").await;
    let r = client()
        .post(reg.url(&format!("/v2/dst/blobs/uploads/?mount={d}&from=src")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = client()
        .head(reg.url(&format!("/v2/dst/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Not in the source: falls back to a new upload session.
    let r = client()
        .post(reg.url(&format!("/v2/dst2/blobs/uploads/?mount={d}&from=elsewhere")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers().contains_key("location"));
    // Without `from` a mount links from a repository that holds the blob
    // (without access rules everyone may pull everything); a digest stored
    // nowhere is a plain upload start. Access rules: see tests/security.rs.
    let r = client()
        .post(reg.url(&format!("/v2/anon/blobs/uploads/?mount={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let r = client()
        .head(reg.url(&format!("/v2/anon/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let unknown = sha256(b"unknown");
    let r = client()
        .post(reg.url(&format!("/v2/anon/blobs/uploads/?mount={unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers().contains_key("location"));
    assert!(!r.headers().contains_key("docker-content-digest"));
}

#[tokio::test]
async fn descriptor_sizes_must_match_the_stored_content() {
    let reg = serve(&[]);
    let cd = push_blob(&reg, "sizes", b"{}").await;
    let ld = push_blob(&reg, "sizes", b"12345").await;
    let image = |layer_size: u64| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer_size}]}))
        .unwrap()
    };
    let r = put_manifest(&reg, "sizes", "lie", OCI_MANIFEST, &image(999_999)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = client()
        .head(reg.url("/v2/sizes/manifests/lie"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing was stored");
    let good = image(5);
    let r = put_manifest(&reg, "sizes", "ok", OCI_MANIFEST, &good).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // An index's child manifest is checked too.
    let index = |size: usize| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&good), "size": size}]}))
        .unwrap()
    };
    let r = put_manifest(&reg, "sizes", "list", OCI_INDEX, &index(good.len() + 1)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = put_manifest(&reg, "sizes", "list", OCI_INDEX, &index(good.len())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn blob_pushed_to_ten_repositories_is_stored_once() {
    let reg = serve(&[]);
    let data = vec![42u8; 100_000];
    for i in 0..10 {
        push_blob(&reg, &format!("team/repo{i}"), &data).await;
        push_blob(&reg, "team/repo0", &data).await;
    }
    let blobs = reg.stored_files("blobs");
    assert_eq!(blobs.len(), 1, "one stored copy: {blobs:?}");
    assert_eq!(std::fs::metadata(&blobs[0]).unwrap().len(), 100_000);
    assert!(reg.stored_files("uploads").is_empty());
}

#[tokio::test]
async fn manifests_by_tag_and_digest_with_tag_parameters() {
    let reg = serve(&[]);
    let (d, bytes) = push_image(&reg, "img", "v1", "one").await;
    for reference in ["v1", d.as_str()] {
        let r = client()
            .get(reg.url(&format!("/v2/img/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        assert_eq!(r.bytes().await.unwrap(), bytes);
        let r = client()
            .head(reg.url(&format!("/v2/img/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
    }
    let r = client()
        .put(reg.url(&format!("/v2/img/manifests/{d}?tag=a&tag=b")))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let tags: Vec<_> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    let r = client()
        .get(reg.url("/v2/img/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "img", "tags": ["a", "b", "v1"]})
    );
    // Deleting a tag leaves the manifest; deleting the digest removes every tag.
    let r = client()
        .delete(reg.url("/v2/img/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client()
        .get(reg.url("/v2/img/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let r = client()
        .delete(reg.url(&format!("/v2/img/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client()
        .get(reg.url("/v2/img/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = client()
        .get(reg.url(&format!("/v2/img/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn manifest_referencing_missing_content_is_manifest_blob_unknown() {
    let reg = serve(&[]);
    let cd = push_blob(&reg, "strict", b"{}").await;
    let missing = sha256(b"not pushed");
    let image = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 10}]});
    let r = put_manifest(
        &reg,
        "strict",
        "img",
        OCI_MANIFEST,
        &serde_json::to_vec(&image).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]});
    let r = put_manifest(
        &reg,
        "strict",
        "idx",
        OCI_INDEX,
        &serde_json::to_vec(&index).unwrap(),
    )
    .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    // A blob of another repository does not count.
    let other = push_blob(&reg, "other", b"layer elsewhere").await;
    let image = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": other, "size": 15}]});
    let r = put_manifest(
        &reg,
        "strict",
        "img",
        OCI_MANIFEST,
        &serde_json::to_vec(&image).unwrap(),
    )
    .await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    let r = client()
        .get(reg.url("/v2/strict/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
}

#[tokio::test]
async fn sparse_manifests_are_accepted_when_allowed() {
    let reg = serve(&["--allow-sparse"]);
    let missing = sha256(b"not pushed");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]});
    let r = put_manifest(
        &reg,
        "sparse",
        "idx",
        OCI_INDEX,
        &serde_json::to_vec(&index).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn referrers_with_missing_subject_filter_and_delete() {
    let reg = serve(&[]);
    let subject = sha256(b"subject pushed later");
    let empty = push_blob(&reg, "ref", b"{}").await;
    let mut digests = Vec::new();
    for (i, at) in ["application/x-sig", "application/x-sbom"]
        .iter()
        .enumerate()
    {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 123},
            "annotations": {"n": i.to_string()}});
        let bytes = serde_json::to_vec(&m).unwrap();
        let r = put_manifest(&reg, "ref", &sha256(&bytes), OCI_MANIFEST, &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        digests.push(sha256(&bytes));
    }
    let r = client()
        .get(reg.url(&format!("/v2/ref/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert!(!r.headers().contains_key("oci-filters-applied"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let r = client()
        .get(reg.url(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/x-sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"][0]["artifactType"], "application/x-sbom");
    assert_eq!(v["manifests"][0]["annotations"], json!({"n": "1"}));
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    client()
        .delete(reg.url(&format!("/v2/ref/manifests/{}", digests[0])))
        .send()
        .await
        .unwrap();
    let v: Value = client()
        .get(reg.url(&format!("/v2/ref/referrers/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let unknown = sha256(b"nobody refers to me");
    let r = client()
        .get(reg.url(&format!("/v2/ref/referrers/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["manifests"], json!([]));
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link() {
    let reg = serve(&[]);
    let (d, bytes) = push_image(&reg, "pages/img", "t0", "p").await;
    for t in ["t3", "t1", "t2", "t4"] {
        put_manifest(&reg, "pages/img", t, OCI_MANIFEST, &bytes).await;
    }
    assert!(d.starts_with("sha256:"));
    let r = client()
        .get(reg.url("/v2/pages/img/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/pages/img/tags/list?n=2&last=t1>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["tags"],
        json!(["t0", "t1"])
    );
    let r = client()
        .get(reg.url("/v2/pages/img/tags/list?n=2&last=t3"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("link"));
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["t4"]));
    let r = client()
        .get(reg.url("/v2/nothing/here/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    for repo in ["c", "a", "b"] {
        push_blob(&reg, repo, b"x").await;
    }
    let r = client()
        .get(reg.url("/v2/_catalog?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?n=2&last=b>; rel=\"next\""
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["a", "b"])
    );
    let r = client()
        .get(reg.url("/v2/_catalog?last=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["c", "pages/img"])
    );
}

#[tokio::test]
async fn blob_delete_is_immediate() {
    let reg = serve(&[]);
    let d = push_blob(&reg, "del", b"bye").await;
    let r = client()
        .delete(reg.url(&format!("/v2/del/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client()
        .head(reg.url(&format!("/v2/del/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client()
        .delete(reg.url(&format!("/v2/del/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn sha512_is_supported_and_other_algorithms_are_refused() {
    let reg = serve(&[]);
    let data = b"sha512 content";
    let d = sha512(data);
    let r = client()
        .post(reg.url(&format!("/v2/algo/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client()
        .get(reg.url(&format!("/v2/algo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), data.as_slice());
    let r = client()
        .post(reg.url("/v2/algo/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn digest_mismatch_is_refused_and_leaves_nothing() {
    let reg = serve(&[]);
    let wrong = sha256(b"something else");
    let r = client()
        .post(reg.url(&format!("/v2/bad/blobs/uploads/?digest={wrong}")))
        .body("actual bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = client()
        .head(reg.url(&format!("/v2/bad/blobs/{}", sha256(b"actual bytes"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(reg.stored_files("blobs").is_empty());
    assert!(reg.stored_files("uploads").is_empty());
    let catalog: Value = client()
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], json!([]));
}

#[tokio::test]
async fn malformed_requests_get_spec_errors_and_leave_no_trace() {
    let reg = serve(&[]);
    let d = sha256(b"x");
    let cases: Vec<(Method, String, u16, &str)> = vec![
        (
            Method::GET,
            "/v2/UPPER/tags/list".into(),
            400,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            format!("/v2/{}/tags/list", "a".repeat(300)),
            400,
            "NAME_INVALID",
        ),
        // A reference that is neither a tag nor a digest names no manifest:
        // 404 for reads, as distribution answers; 400 for a push.
        (
            Method::GET,
            "/v2/a/manifests/bad@ref".into(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/a/manifests/sha256:123".into(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            Method::PUT,
            "/v2/a/manifests/bad@ref".into(),
            400,
            "MANIFEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/a/blobs/sha256:123".into(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/a/blobs/uploads/not-a-uuid".into(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/a/unknown/endpoint".into(),
            404,
            "UNSUPPORTED",
        ),
        (Method::GET, "/nothing".into(), 404, "UNSUPPORTED"),
        (Method::POST, format!("/v2/a/blobs/{d}"), 405, "UNSUPPORTED"),
        (
            Method::PUT,
            "/v2/a/blobs/uploads/".into(),
            405,
            "UNSUPPORTED",
        ),
    ];
    for (method, path, status, code) in cases {
        let r = client()
            .request(method.clone(), reg.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_eq!(error_code(r).await, code, "{method} {path}");
    }
    let r = client()
        .head(reg.url("/v2/a/manifests/bad@ref"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Path traversal, sent raw because HTTP clients normalise `..` away.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/a/%2e%2e/b/tags/list",
        "/v2/a%2f..%2fb/tags/list",
        "/v2/../../etc/passwd/blobs/uploads/",
        "/v2/a/./b/manifests/x",
    ] {
        let reply = raw_request(
            &reg,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            false,
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{path}: {reply}");
        assert!(reply.contains("NAME_INVALID"), "{path}: {reply}");
    }

    // Manifests: bad JSON, wrong or missing Content-Type, over 4 MiB.
    let cd = push_blob(&reg, "m", b"{}").await;
    let good = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2}, "layers": []});
    let good = serde_json::to_vec(&good).unwrap();
    for (ct, body) in [
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_INDEX, good.clone()),
        ("text/plain", good.clone()),
    ] {
        let r = put_manifest(&reg, "m", "t", ct, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{ct}");
        assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    }
    let no_media_type = br#"{"schemaVersion":2,"manifests":[]}"#;
    let r = client()
        .put(reg.url("/v2/m/manifests/t"))
        .body(no_media_type.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let mut huge = good.clone();
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(
        format!(
            r#","annotations":{{"pad":"{}"}}}}"#,
            "x".repeat(4 * 1024 * 1024)
        )
        .as_bytes(),
    );
    let r = put_manifest(&reg, "m", "t", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = put_manifest(&reg, "m", &sha256(b"other"), OCI_MANIFEST, &good).await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");

    // Content-Range: malformed, huge, and disagreeing with the body length.
    let loc = start_upload(&reg, "m").await;
    for cr in ["abc", "5-1", "0-99999999999999999999"] {
        let r = client()
            .patch(reg.url(&loc))
            .header(header::CONTENT_RANGE, cr)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{cr}");
        assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    }
    let r = client()
        .patch(reg.url(&loc))
        .header(header::CONTENT_RANGE, "0-9")
        .body("twenty bytes of data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0", "the session is untouched");

    // A body cut short by the client leaves the session where it was.
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(&[1u8; 400]);
    raw_request(&reg, &req, true).await;
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
    // A body longer than declared: only the declared bytes count, so the digest fails.
    let full = b"0123456789ABCDEFGHIJ";
    let head = format!(
        "POST /v2/m/blobs/uploads/?digest={} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
        sha256(full)
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(full);
    let reply = raw_request(&reg, &req, false).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("DIGEST_INVALID"), "{reply}");

    let catalog: Value = client()
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        json!(["m"]),
        "only the config blob push left a trace"
    );
    assert_eq!(reg.stored_files("blobs").len(), 1);
    let r = client()
        .get(reg.url("/v2/m/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
}

#[tokio::test]
async fn chunked_upload_survives_a_registry_crash() {
    let reg = serve(&[]);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let loc = start_upload(&reg, "restart").await;
    let r = client()
        .patch(reg.url(&loc))
        .body(data[..60_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let dir = reg.kill();
    let reg = serve_in(&dir, &[]);
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-59999");
    let r = client()
        .patch(reg.url(&loc))
        .header(header::CONTENT_RANGE, "60000-99999")
        .body(data[60_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let d = sha256(&data);
    let r = client()
        .put(reg.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = client()
        .get(reg.url(&format!("/v2/restart/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
    drop(reg);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_and_one_tag_stay_consistent() {
    let reg = serve(&[]);
    let data = vec![9u8; 2 * 1024 * 1024];
    let d = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = reg.url(&format!("/v2/race{}/blobs/uploads/?digest={d}", i % 2));
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            client().post(url).body(data).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(reg.stored_files("blobs").len(), 1);
    // Eight manifests race for one tag; the tag ends on one of them, intact.
    let cd = push_blob(&reg, "race0", b"{}").await;
    let mut tasks = Vec::new();
    let mut candidates = Vec::new();
    for i in 0..8 {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": data.len()}],
            "annotations": {"i": i.to_string()}});
        let bytes = serde_json::to_vec(&m).unwrap();
        candidates.push(sha256(&bytes));
        let url = reg.url("/v2/race0/manifests/latest");
        tasks.push(tokio::spawn(async move {
            client()
                .put(url)
                .header(header::CONTENT_TYPE, OCI_MANIFEST)
                .body(bytes)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    let r = client()
        .get(reg.url("/v2/race0/manifests/latest"))
        .send()
        .await
        .unwrap();
    let got = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(candidates.contains(&got));
    assert_eq!(sha256(&r.bytes().await.unwrap()), got);
}

/// A 4 GiB streamed push must not grow the registry by more than a few tens of MiB.
#[tokio::test]
async fn four_gib_push_keeps_memory_flat() {
    const SIZE: u64 = 4 << 30;
    const CHUNK: usize = 1 << 20;
    let reg = serve(&[]);
    let before = reg.rss_peak_kib();
    let block: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 256) as u8).collect();
    let mut hasher = Sha256::new();
    for _ in 0..SIZE / CHUNK as u64 {
        hasher.update(&block);
    }
    let d = format!("sha256:{}", hex::encode(hasher.finalize()));
    let block = bytes::Bytes::from(block);
    let chunks = (0..SIZE / CHUNK as u64).map(move |_| Ok::<_, std::io::Error>(block.clone()));
    let loc = start_upload(&reg, "big").await;
    let r = client()
        .patch(reg.url(&loc))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client()
        .put(reg.url(&format!("{loc}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let grown_mib = (reg.rss_peak_kib() - before) / 1024;
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB during a 4 GiB push"
    );
    let blobs = reg.stored_files("blobs");
    assert_eq!(std::fs::metadata(&blobs[0]).unwrap().len(), SIZE);
}
