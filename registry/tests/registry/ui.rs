//! The web UI at `/ui/` and its JSON API, against the real binary: logins
//! and sessions, the same access rules as `/v2/` on every page and call,
//! CSRF on every write, the views' contents, tag pages, and error pages.

use reqwest::redirect::Policy;
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::{add_user, push_blob_as, Registry, OCI_MANIFEST};

const RULES: &str = r#"
[auth]
htpasswd = "htpasswd"
[[auth.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repositories = ["team/**"]
users = ["bob"]
actions = ["pull"]
[[auth.rules]]
repositories = ["public/*"]
anonymous = true
users = ["alice"]
actions = ["pull", "push"]
"#;

fn client() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// A registry with alice (everything on team/**), bob (pull on team/**)
/// and anonymous pulls of public/*.
fn with_rules() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    for user in ["alice", "bob"] {
        add_user(dir.path(), user);
    }
    std::fs::write(dir.path().join("strata.toml"), RULES).unwrap();
    Registry::launch_owning(dir)
        .data()
        .args(["--config", "strata.toml"])
        .start()
}

const ALICE: Option<(&str, &str)> = Some(("alice", "alice-pw"));

/// Push an image (a config with run settings and history, one layer) to
/// `repo:tag` as `who`; its manifest digest.
async fn push_image(
    reg: &Registry,
    who: Option<(&str, &str)>,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> String {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/bin", "MODE=prod"],
                   "WorkingDir": "/srv", "User": "1000", "ExposedPorts": {"8080/tcp": {}},
                   "Labels": {"org.opencontainers.image.title": "app"}, "StopSignal": "SIGTERM",
                   "Healthcheck": {"Test": ["CMD", "true"]}},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": "/bin/sh -c #(nop) ADD file:abc in /"},
                    {"created_by": "/bin/sh -c #(nop)  CMD [\"--serve\"]", "empty_layer": true}]
    }))
    .unwrap();
    let cd = push_blob_as(reg, repo, who, &config).await;
    let ld = push_blob_as(reg, repo, who, layer).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
        "annotations": {"org.opencontainers.image.source": "https://example.invalid/app"}}))
    .unwrap();
    put(reg, who, repo, tag, &manifest).await
}

async fn put(
    reg: &Registry,
    who: Option<(&str, &str)>,
    repo: &str,
    reference: &str,
    manifest: &[u8],
) -> String {
    let mut r = client()
        .put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest.to_vec());
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push {repo}:{reference}");
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// GET `path` as `who` (Basic) or with `cookie`: status and JSON body.
async fn api(
    reg: &Registry,
    path: &str,
    who: Option<(&str, &str)>,
    cookie: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = client().get(reg.url(path));
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

/// Log in through the form; the session cookie (`name=value`).
async fn login(reg: &Registry, user: &str) -> String {
    let r = client()
        .post(reg.url("/ui/login"))
        .form(&[
            ("username", user),
            ("password", &format!("{user}-pw")),
            ("next", "/ui/dashboard"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/ui/dashboard");
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(flag), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn viewers_see_only_what_they_may_pull_and_delete_only_where_allowed() {
    let reg = with_rules();
    push_image(&reg, ALICE, "team/app", "v1", b"layer one").await;
    push_image(&reg, ALICE, "team/app", "v2", b"layer two").await;
    push_image(&reg, ALICE, "public/tool", "1.0", b"layer three").await;

    let (s, anon) = api(&reg, "/ui/api/repositories", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(names(&anon), ["public/tool"]);
    let (_, bob) = api(&reg, "/ui/api/repositories", Some(("bob", "bob-pw")), None).await;
    assert_eq!(names(&bob), ["team/app"]);
    let (_, alice) = api(&reg, "/ui/api/repositories", ALICE, None).await;
    assert_eq!(names(&alice), ["public/tool", "team/app"]);
    assert_eq!(alice["items"][1]["tags"], 2);

    // Anonymous: a login is asked for; bob: pull yes, delete no.
    let (s, body) = api(&reg, "/ui/api/r/team/app/-/tags", None, None).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("login_required"))
    );
    let (s, tags) = api(
        &reg,
        "/ui/api/r/team/app/-/tags",
        Some(("bob", "bob-pw")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tags["can_delete"], false);
    let page = client()
        .get(reg.url("/ui/r/team/app"))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("v1") && !html.contains("/-/delete"), "{html}");
    let r = client()
        .delete(reg.url("/ui/api/r/team/app/-/manifests/v1"))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (s, _) = api(
        &reg,
        "/ui/api/r/public/tool/-/tags",
        Some(("bob", "bob-pw")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A wrong password is a 401, never a view.
    let (s, _) = api(&reg, "/ui/api/repositories", Some(("bob", "nope")), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The dashboard takes a login, as /metrics does.
    let (s, _) = api(&reg, "/ui/api/dashboard", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, d) = api(&reg, "/ui/api/dashboard", Some(("bob", "bob-pw")), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["repositories"], 2);
}

#[tokio::test]
async fn a_session_needs_its_csrf_token_to_delete_and_ends_at_logout() {
    let reg = with_rules();
    push_image(&reg, ALICE, "team/app", "v1", b"layer one").await;
    push_image(&reg, ALICE, "team/app", "v2", b"layer two").await;
    let bad = client()
        .post(reg.url("/ui/login"))
        .form(&[("username", "alice"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let cookies: Vec<_> = bad.headers().get_all(header::SET_COOKIE).iter().collect();
    assert!(!cookies
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("strata_session=")));
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password"));

    let cookie = login(&reg, "alice").await;
    let (s, me) = api(&reg, "/ui/api/session", None, Some(&cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"], "alice");
    let csrf = me["csrf"].as_str().unwrap().to_owned();
    let (_, tags) = api(&reg, "/ui/api/r/team/app/-/tags", None, Some(&cookie)).await;
    assert_eq!(tags["can_delete"], true);

    // The API's DELETE: the token in a header; the form: in a field.
    let del = |token: Option<&str>| {
        let mut r = client()
            .delete(reg.url("/ui/api/r/team/app/-/manifests/v1"))
            .header(header::COOKIE, &cookie);
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    assert_eq!(del(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        del(Some("0".repeat(64).as_str())).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        del(Some(&csrf)).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let form = |token: &str| {
        client()
            .post(reg.url("/ui/r/team/app/-/delete"))
            .header(header::COOKIE, &cookie)
            .form(&[("reference", "v2"), ("csrf", token)])
            .send()
    };
    let r = form("forged").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let r = form(&csrf).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/ui/r/team/app?deleted=v2");
    let (_, tags) = api(&reg, "/ui/api/r/team/app/-/tags", None, Some(&cookie)).await;
    assert_eq!(tags["total"], 0);
    let r = client()
        .get(reg.url("/v2/team/app/manifests/v2"))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Logout needs the token too, then the cookie is dead: an HTML page says so.
    let out = client()
        .post(reg.url("/ui/logout"))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    let out = client()
        .post(reg.url("/ui/logout"))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let r = client()
        .get(reg.url("/ui/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert!(r.text().await.unwrap().contains("session has expired"));
    let (s, body) = api(&reg, "/ui/api/session", None, Some(&cookie)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("session_expired"))
    );
}

#[tokio::test]
async fn image_view_has_layers_config_annotations_and_referrers() {
    let reg = Registry::launch_fresh().start();
    let digest = push_image(&reg, None, "shop/web", "1.0", b"web layer").await;
    // A signature-like referrer: an artifact whose subject is the image.
    let empty = push_blob_as(&reg, "shop/web", None, b"{}").await;
    let sig = push_blob_as(&reg, "shop/web", None, b"signature bytes").await;
    let referrer = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 15}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}}))
    .unwrap();
    let referrer_digest = crate::harness::sha256(&referrer);
    put(&reg, None, "shop/web", &referrer_digest, &referrer).await;

    let (s, m) = api(&reg, "/ui/api/r/shop/web/-/manifests/1.0", None, None).await;
    assert_eq!(s, StatusCode::OK, "{m}");
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["tags"], json!(["1.0"]));
    assert_eq!(m["layers"][0]["instruction"], "ADD file:abc in /");
    assert_eq!(m["layers"][0]["size"], 9);
    let c = &m["config"]["config"];
    assert_eq!(c["Entrypoint"], json!(["/bin/app"]));
    assert_eq!(c["Env"], json!(["PATH=/bin", "MODE=prod"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(m["config"]["platform"], "linux/amd64");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.source"],
        "https://example.invalid/app"
    );
    assert_eq!(
        m["referrers"][0]["artifact_type"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert_eq!(
        m["referrers"][0]["items"][0]["digest"],
        referrer_digest.as_str()
    );

    let html = client()
        .get(reg.url("/ui/r/shop/web/-/manifest/1.0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "Entrypoint",
        "/bin/app",
        "MODE=prod",
        "8080/tcp",
        "ADD file:abc in /",
        "SIGTERM",
        &format!("/ui/r/shop/web/-/manifest/{referrer_digest}"),
        "docker pull",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    // The referrer's own page links back to its subject.
    let (_, r) = api(
        &reg,
        &format!("/ui/api/r/shop/web/-/manifests/{referrer_digest}"),
        None,
        None,
    )
    .await;
    assert_eq!(r["subject"], digest.as_str());

    // The same layer in a second repository: stored once, seen twice.
    push_image(&reg, None, "shop/api", "1.0", b"web layer").await;
    let (s, d) = api(&reg, "/ui/api/dashboard", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(d["saved_bytes"].as_u64().unwrap() >= 9, "{d}");
    assert!(
        d["logical_bytes"].as_u64() > d["stored_bytes"].as_u64(),
        "{d}"
    );
    assert_eq!(d["repositories"], 2);
}

#[tokio::test]
async fn repository_search_sort_and_tag_pages() {
    let reg = Registry::launch_fresh().start();
    push_image(&reg, None, "alpha/one", "a", b"1").await;
    push_image(
        &reg,
        None,
        "beta/alpha",
        "a",
        b"a much larger layer than the other",
    )
    .await;
    let (_, l) = api(&reg, "/ui/api/repositories?q=alpha", None, None).await;
    assert_eq!(names(&l), ["alpha/one", "beta/alpha"]);
    let (_, l) = api(&reg, "/ui/api/repositories?q=alpha&mode=prefix", None, None).await;
    assert_eq!(names(&l), ["alpha/one"]);
    let (_, l) = api(&reg, "/ui/api/repositories?sort=size", None, None).await;
    assert_eq!(names(&l), ["beta/alpha", "alpha/one"]);
    let (_, l) = api(&reg, "/ui/api/repositories?q=%25", None, None).await;
    assert_eq!(l["total"], 0, "LIKE wildcards are literal");

    // 120 tags: pages of 50 after the last tag shown.
    let m = client()
        .get(reg.url("/v2/alpha/one/manifests/a"))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let bytes = m.bytes().await.unwrap();
    for i in 0..120 {
        put(&reg, None, "alpha/one", &format!("t{i:03}"), &bytes).await;
    }
    let (_, p1) = api(&reg, "/ui/api/r/alpha/one/-/tags", None, None).await;
    assert_eq!(p1["total"], 121);
    assert_eq!(p1["items"].as_array().unwrap().len(), 50);
    assert_eq!(p1["items"][0]["name"], "a");
    let next = p1["next"].as_str().unwrap();
    assert_eq!(next, "t048");
    let (_, p3) = api(&reg, "/ui/api/r/alpha/one/-/tags?last=t098", None, None).await;
    assert_eq!(p3["items"].as_array().unwrap().len(), 21);
    assert!(p3["next"].is_null());
    assert_eq!(p3["items"][0]["size"], p1["items"][0]["size"]);
}

#[tokio::test]
async fn bad_input_gets_an_html_page_with_the_right_status() {
    let reg = Registry::launch_fresh().start();
    push_image(&reg, None, "known", "v1", b"x").await;
    for (path, status, text) in [
        (
            "/ui/r/unknown",
            StatusCode::NOT_FOUND,
            "repository unknown is not known",
        ),
        (
            "/ui/r/known/-/manifest/sha256:nothex",
            StatusCode::BAD_REQUEST,
            "invalid digest",
        ),
        (
            "/ui/r/known/-/manifest/nosuchtag",
            StatusCode::NOT_FOUND,
            "manifest nosuchtag is not known",
        ),
        (
            "/ui/r/Bad..Name",
            StatusCode::BAD_REQUEST,
            "invalid repository name",
        ),
        ("/ui/no/such/page", StatusCode::NOT_FOUND, "no such page"),
        ("/ui/?page=notanumber", StatusCode::BAD_REQUEST, "invalid"),
    ] {
        let r = client().get(reg.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let html = r.text().await.unwrap();
        assert!(
            html.contains(text) && html.contains("</html>"),
            "{path}: {html}"
        );
    }
    let (s, body) = api(&reg, "/ui/api/r/unknown/-/tags", None, None).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let r = client()
        .post(reg.url("/ui/r/known/-/manifest/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Assets are embedded; pages refuse framing.
    let r = client()
        .get(reg.url("/ui/assets/style.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = client().get(reg.url("/ui/")).send().await.unwrap();
    assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("strata_csrf="));
}

#[tokio::test]
async fn no_ui_turns_the_ui_off() {
    let reg = Registry::launch_fresh().args(["--no-ui"]).start();
    let r = client().get(reg.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.text().await.unwrap().contains("errors"),
        "the API's fallback answers"
    );
    let on = Registry::launch_fresh().start();
    let r = client().get(on.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// With a mirror, the dashboard shows each upstream's counters and hit rate.
#[tokio::test]
async fn dashboard_shows_each_upstreams_hit_rate() {
    use crate::mirror::{bytes_of, get, push_image};
    let upstream = Registry::launch_fresh().start();
    let image = push_image(&upstream, "team/app", "v1", vec![bytes_of("a", 1000)]).await;
    let mirror = Registry::launch_fresh()
        .args(["--upstream", &format!("up={}", upstream.base)])
        .start();

    let (status, d) = api(&mirror, "/ui/api/dashboard", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        d["mirrors"],
        json!([{"name": "up", "hits": 0, "misses": 0, "errors": 0, "stale": 0, "fetched_bytes": 0}])
    );

    // The first pull of the tag comes from the upstream; the same manifest
    // by digest is then served from the store.
    let (status, _, _) = get(&mirror, "/v2/up/team/app/manifests/v1").await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/v2/up/team/app/manifests/{}", image.digest);
    let (status, _, _) = get(&mirror, &path).await;
    assert_eq!(status, StatusCode::OK);

    let (_, d) = api(&mirror, "/ui/api/dashboard", None, None).await;
    let m = &d["mirrors"][0];
    let (hits, misses) = (m["hits"].as_u64().unwrap(), m["misses"].as_u64().unwrap());
    assert!(hits >= 1 && misses >= 1, "{m}");
    let page = client()
        .get(mirror.url("/ui/dashboard"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rate = format!("{:.0}%", hits as f64 * 100.0 / (hits + misses) as f64);
    assert!(
        page.contains("Mirror since start") && page.contains(&rate),
        "{rate} not in {page}"
    );

    // Without a mirror there is no mirror table.
    let plain = Registry::launch_fresh().start();
    let (_, d) = api(&plain, "/ui/api/dashboard", None, None).await;
    assert_eq!(d["mirrors"], json!([]));
}
