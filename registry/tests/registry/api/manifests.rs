//! Manifests, referrers, tags and the catalog, and requests that break the
//! protocol (malformed paths, bodies and headers).

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use super::{client, push_image, put_manifest, raw_request, serve, start_upload};
use crate::harness::{error_code, push_blob, sha256, OCI_INDEX, OCI_MANIFEST};

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
    // A manifest of a repository that holds nothing: NAME_UNKNOWN, by tag
    // or digest; once the repository holds a blob, MANIFEST_UNKNOWN.
    let absent = sha256(b"no such manifest");
    for reference in ["latest", absent.as_str()] {
        let url = reg.url(&format!("/v2/nothing/here/manifests/{reference}"));
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(r).await, "NAME_UNKNOWN", "GET {reference}");
        let r = client().head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "HEAD {reference}");
    }
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
    push_blob(&reg, "only/blobs", b"a blob, no manifest").await;
    let r = client()
        .get(reg.url("/v2/only/blobs/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
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
