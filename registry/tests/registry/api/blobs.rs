//! Blobs and uploads: reads with Range, chunked and streamed uploads,
//! mounts, deduplication, digests, crashes, concurrency and memory.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{client, serve, serve_in, sha512, start_upload};
use crate::harness::{error_code, push_blob, sha256, OCI_MANIFEST};

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

/// A large chunk refused before it is read (out of order) is drained, so
/// the client can send all of it and then reads the 416; it used to get a
/// broken pipe when the server closed on its unread bytes.
#[tokio::test]
async fn a_refused_large_chunk_is_answered_not_reset() {
    let reg = serve(&[]);
    let loc = start_upload(&reg, "chunks").await;
    let chunk = vec![7u8; 8 << 20];
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 5-{}\r\nContent-Length: {}\r\n\r\n",
        reg.addr,
        5 + chunk.len() - 1,
        chunk.len()
    );
    let mut s = tokio::net::TcpStream::connect(reg.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&chunk)
        .await
        .expect("the whole refused chunk can be sent");
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 416"), "{answer}");
    let r = client().get(reg.url(&loc)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-0");
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
