//! Tag lists of mirrored repositories: the upstream's, cached for the tag
//! TTL, merged with the local tags; the local ones alone (marked stale)
//! when the upstream is down.

use reqwest::StatusCode;

use super::{bytes_of, get, mirror_with, push_image};
use crate::harness::Registry;

/// The `tags` of a tag list, and its `Warning` and `Link` headers.
async fn tags(reg: &Registry, path: &str) -> (Vec<String>, Option<String>, Option<String>) {
    let (status, headers, body) = get(reg, path).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    (names, header("warning"), header("link"))
}

#[tokio::test]
async fn tag_lists_merge_the_upstreams_and_fall_back_to_the_local_tags() {
    let mut upstream = Registry::launch_fresh().start();
    for tag in ["v1", "v2"] {
        push_image(&upstream, "team/app", tag, vec![bytes_of(tag, 100)]).await;
    }
    let config = |ttl: &str| {
        format!("[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\ntag_ttl = \"{ttl}\"\ntimeout = \"5s\"\n")
    };
    let cached = mirror_with(&upstream.base, &config("1h"));
    let asking = mirror_with(&upstream.base, &config("0"));
    let list = "/v2/up/team/app/tags/list";
    for m in [&cached, &asking] {
        assert_eq!(tags(m, list).await.0, ["v1", "v2"]);
    }
    push_image(&upstream, "team/app", "v3", vec![bytes_of("v3", 100)]).await;
    // Within the TTL the list read before stands; past it, the upstream is asked.
    assert_eq!(tags(&cached, list).await.0, ["v1", "v2"]);
    assert_eq!(tags(&asking, list).await.0, ["v1", "v2", "v3"]);
    // Pages follow n and last.
    let (page, _, link) = tags(&cached, &format!("{list}?n=1")).await;
    assert_eq!(page, ["v1"]);
    assert!(link.unwrap().contains("last=v1"));
    assert_eq!(
        tags(&cached, &format!("{list}?n=1&last=v1")).await.0,
        ["v2"]
    );

    let (status, _, _) = get(&asking, "/v2/up/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    upstream.terminate();
    let (names, warning, _) = tags(&asking, list).await;
    assert_eq!(names, ["v1"]);
    assert!(warning.unwrap().starts_with("110 "));
}
