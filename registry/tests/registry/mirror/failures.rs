//! The mirror when the upstream fails: stopped (stale serving), hostile
//! (bytes that do not match their digest), and many clients missing the
//! same blob at once (single flight).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::{Client, StatusCode};

use super::{bytes_of, get, metric, mirror_with, push_image};
use crate::harness::{sha256, Registry};

#[tokio::test]
async fn stopped_upstream_serves_cached_tags_stale_and_digests_as_usual() {
    let mut upstream = Registry::launch_fresh().start();
    let image = push_image(&upstream, "team/app", "v1", vec![bytes_of("offline", 5000)]).await;
    let mirror = mirror_with(
        &upstream.base,
        "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\ntag_ttl = \"0\"\ntimeout = \"5s\"\n",
    );
    let (status, headers, _) = get(&mirror, "/v2/up/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("warning"));
    let (digest, bytes) = &image.layers[0];
    let (status, _, _) = get(&mirror, &format!("/v2/up/team/app/blobs/{digest}")).await;
    assert_eq!(status, StatusCode::OK);

    upstream.terminate();
    let (status, headers, body) = get(&mirror, "/v2/up/team/app/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    let warning = headers["warning"].to_str().unwrap();
    assert!(warning.starts_with("110 "), "{warning}");
    let (status, headers, body) = get(
        &mirror,
        &format!("/v2/up/team/app/manifests/{}", image.digest),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    assert!(!headers.contains_key("warning"));
    let (status, _, body) = get(&mirror, &format!("/v2/up/team/app/blobs/{digest}")).await;
    assert_eq!((status, &body), (StatusCode::OK, bytes));
    // What was never cached cannot be served: 503, the spec's JSON.
    let (status, _, body) = get(&mirror, "/v2/up/team/app/manifests/v2").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("UNAVAILABLE"));
    assert!(!String::from_utf8_lossy(&body).contains(&upstream.base));
    let (status, _, _) = get(
        &mirror,
        &format!("/v2/up/team/app/blobs/{}", sha256(b"never")),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(metric(&mirror, "strata_mirror_stale_total{upstream=\"up\"}").await >= 1);
}

/// A server that answers `/v2/` and every blob GET with `body`, whatever
/// digest was asked for; counts the blob GETs. Stops with the test process.
fn hostile_upstream(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gets = Arc::new(AtomicUsize::new(0));
    let counted = gets.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counted = counted.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let payload: &[u8] = if path.contains("/blobs/") || path.contains("/manifests/")
                    {
                        counted.fetch_add(1, Ordering::SeqCst);
                        &body
                    } else {
                        b"{}"
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
                        payload.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(payload).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (base, gets)
}

#[tokio::test]
async fn bytes_that_do_not_match_their_digest_are_never_stored_or_served() {
    let lie = bytes_of("what was asked for", 3 << 20);
    let digest = sha256(&lie);
    let (base, gets) = hostile_upstream(bytes_of("something else", 3 << 20));
    let mirror = mirror_with(&base, "[[upstream]]\nname = \"bad\"\nurl = \"UPSTREAM\"\n");
    let url = mirror.url(&format!("/v2/bad/team/app/blobs/{digest}"));
    for attempt in 1..=2 {
        let r = Client::new().get(&url).send().await.unwrap();
        // Either refused outright, or the body breaks before it is whole.
        let whole = r.status() == StatusCode::OK && r.bytes().await.is_ok();
        assert!(
            !whole,
            "attempt {attempt}: the client got the bad blob whole"
        );
        assert_eq!(
            gets.load(Ordering::SeqCst),
            attempt,
            "each pull asked upstream again"
        );
    }
    let hex = digest.trim_start_matches("sha256:");
    let stored: Vec<_> = mirror
        .stored_files("")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(hex))
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    let r = Client::new().head(&url).send().await.unwrap();
    assert_ne!(r.status(), StatusCode::OK);

    // A manifest asked for by digest whose bytes are other ones: 502, not stored.
    let (status, _, body) = get(&mirror, &format!("/v2/bad/team/app/manifests/{digest}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("errors"));
}

#[tokio::test]
async fn twenty_concurrent_misses_fetch_the_blob_once() {
    let upstream = Registry::launch_fresh().start();
    let layer = bytes_of("single flight", 64 << 20);
    let image = push_image(&upstream, "team/big", "v1", vec![layer]).await;
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();
    let before = metric(&upstream, "strata_requests_total{route=\"blob\"").await;
    let (digest, bytes) = &image.layers[0];
    let url = mirror.url(&format!("/v2/up/team/big/blobs/{digest}"));
    let pulls = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let r = Client::new().get(&url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            sha256(&r.bytes().await.unwrap())
        })
    });
    for pull in futures::future::join_all(pulls).await {
        assert_eq!(&pull.unwrap(), digest);
    }
    assert_eq!(
        metric(&upstream, "strata_requests_total{route=\"blob\"").await - before,
        1
    );
    assert_eq!(
        metric(&mirror, "strata_mirror_fetched_bytes_total").await,
        bytes.len() as u64
    );
}
