//! Regression tests for the registry's security findings, each reproducing
//! the attack against the real binary with two users of different rights:
//! cross-repository mounts, failed-login floods, anonymous ops endpoints,
//! stalled manifest bodies and connection floods.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::{add_user, push_blob_as, sha256, Registry, OCI_MANIFEST};

/// alice owns `team/**`; carol may push and pull `carol/**` only.
const RULES: &str = r#"
[[auth.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repositories = ["carol/**"]
users = ["carol"]
actions = ["pull", "push"]
"#;

/// Start with htpasswd users alice and carol (password = name + "-pw"),
/// `auth` lines inside `[auth]` after `RULES`, and `limits` inside `[limits]`.
fn serve(auth: &str, limits: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    for user in ["alice", "carol"] {
        add_user(dir.path(), user);
    }
    let config = format!("[auth]\nhtpasswd = \"htpasswd\"\n{auth}\n{RULES}\n[limits]\n{limits}\n");
    std::fs::write(dir.path().join("strata.toml"), config).unwrap();
    Registry::launch_owning(dir)
        .args(["--config", "strata.toml"])
        .data()
        .stderr(Stdio::null())
        .start()
}

/// Push `data` to `repo` as `who`; its digest.
async fn push_blob(reg: &Registry, repo: &str, who: (&str, &str), data: &[u8]) -> String {
    push_blob_as(reg, repo, Some(who), data).await
}

const ALICE: (&str, &str) = ("alice", "alice-pw");
const CAROL: (&str, &str) = ("carol", "carol-pw");

async fn head_blob(reg: &Registry, repo: &str, who: (&str, &str), digest: &str) -> StatusCode {
    Client::new()
        .head(reg.url(&format!("/v2/{repo}/blobs/{digest}")))
        .basic_auth(who.0, Some(who.1))
        .send()
        .await
        .unwrap()
        .status()
}

async fn mount(reg: &Registry, who: (&str, &str), query: &str) -> reqwest::Response {
    mount_as(reg, who, "carol/loot", query).await
}

async fn mount_as(reg: &Registry, who: (&str, &str), repo: &str, query: &str) -> reqwest::Response {
    Client::new()
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?{query}")))
        .basic_auth(who.0, Some(who.1))
        .send()
        .await
        .unwrap()
}

/// Finding 1: carol, who may push only to `carol/**`, asks to mount alice's
/// private layer and manifest by digest, without `from` and with a `from`
/// she cannot read. Each is a plain upload start (202, no digest header),
/// nothing is linked, and the answer is the same for a digest stored
/// nowhere, so it tells nothing. A mount from her own repository works, and
/// alice's mount without `from` finds the layer in the repository she may pull.
#[tokio::test(flavor = "multi_thread")]
async fn mount_links_only_from_a_repository_the_caller_may_pull() {
    let reg = serve("", "");
    let layer = push_blob(&reg, "team/private", ALICE, b"alice's secret layer").await;
    let config = push_blob(&reg, "team/private", ALICE, b"{}").await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 20}]}))
    .unwrap();
    let r = Client::new()
        .put(reg.url("/v2/team/private/manifests/v1"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let manifest = sha256(&manifest);
    let nowhere = sha256(b"stored nowhere");

    for digest in [&layer, &manifest, &nowhere] {
        for query in [
            format!("mount={digest}"),
            format!("mount={digest}&from=team/private"),
        ] {
            let r = mount(&reg, CAROL, &query).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{query}");
            assert!(r.headers().contains_key(header::LOCATION), "{query}");
            assert!(
                !r.headers().contains_key("docker-content-digest"),
                "{query}"
            );
        }
        assert_eq!(
            head_blob(&reg, "carol/loot", CAROL, digest).await,
            StatusCode::NOT_FOUND,
            "{digest} was linked into carol/loot"
        );
    }
    let r = Client::new()
        .get(reg.url(&format!("/v2/carol/loot/manifests/{manifest}")))
        .basic_auth(CAROL.0, Some(CAROL.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A token that asked for the source's pull scope is not granted it either.
    let r = Client::new()
        .get(reg.url(
            "/token?service=strata&scope=repository:carol/loot:pull,push\
             &scope=repository:team/private:pull",
        ))
        .basic_auth(CAROL.0, Some(CAROL.1))
        .send()
        .await
        .unwrap();
    let token: Value = r.json().await.unwrap();
    let r = Client::new()
        .post(reg.url(&format!(
            "/v2/carol/loot/blobs/uploads/?mount={layer}&from=team/private"
        )))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        head_blob(&reg, "carol/loot", CAROL, &layer).await,
        StatusCode::NOT_FOUND
    );

    // Mounts from a readable source still work, for both users.
    let own = push_blob(&reg, "carol/src", CAROL, b"carol's layer").await;
    let r = mount(&reg, CAROL, &format!("mount={own}&from=carol/src")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        head_blob(&reg, "carol/loot", CAROL, &own).await,
        StatusCode::OK
    );
    let r = Client::new()
        .post(reg.url(&format!(
            "/v2/team/copy/blobs/uploads/?mount={layer}&from=team/private"
        )))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A token of alice's too narrow for the source she may read is asked to
    // widen (401 insufficient_scope naming the source), not silently refused.
    let r = Client::new()
        .get(reg.url("/token?service=strata&scope=repository:team/copy2:pull,push"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    let token: Value = r.json().await.unwrap();
    let r = Client::new()
        .post(reg.url(&format!(
            "/v2/team/copy2/blobs/uploads/?mount={layer}&from=team/private"
        )))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("repository:team/private:pull"),
        "{challenge}"
    );
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    // Without `from`, a mount finds the blob only among the repositories the
    // caller may pull: alice's links from team/private, carol's did not above.
    let r = mount_as(&reg, ALICE, "team/found", &format!("mount={layer}")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        head_blob(&reg, "team/found", ALICE, &layer).await,
        StatusCode::OK
    );
    // ... and a token of hers too narrow for it is asked to widen, naming it.
    let r = Client::new()
        .get(reg.url("/token?service=strata&scope=repository:team/found2:pull,push"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .send()
        .await
        .unwrap();
    let token: Value = r.json().await.unwrap();
    let r = Client::new()
        .post(reg.url(&format!("/v2/team/found2/blobs/uploads/?mount={layer}")))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    // team/copy holds the layer too (mounted above) and comes first by name.
    assert!(
        challenge.contains("repository:team/copy:pull") && challenge.contains("insufficient_scope"),
        "{challenge}"
    );
}

fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login(client: &Client, reg: &Registry, user: &str, password: &str) -> reqwest::Response {
    client
        .get(reg.url("/v2/"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

/// Finding 4: a flood of wrong passwords for alice from one address is cut
/// off with 429 `TOOMANYREQUESTS` and `Retry-After` (no bcrypt work), per
/// address and per user name; alice's cached login still passes, and carol
/// logs in from another address. The token endpoint answers the same.
#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_rate_limited_per_user_and_per_address() {
    let reg = serve("failed_login_burst = 3\nfailed_logins_per_minute = 1.0", "");
    let alice = client_from("127.0.0.1");
    assert_eq!(
        login(&alice, &reg, "alice", "alice-pw").await.status(),
        StatusCode::OK
    );
    let attacker = client_from("127.0.0.2");
    for _ in 0..3 {
        let r = login(&attacker, &reg, "alice", "guess").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login(&attacker, &reg, "alice", "guess").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
    let r = login(&attacker, &reg, "carol", "carol-pw").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "per address");
    let r = attacker
        .get(reg.url("/token?service=strata"))
        .basic_auth("carol", Some("carol-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "token endpoint");

    let other = client_from("127.0.0.3");
    let r = login(&other, &reg, "alice", "guess").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "per user");
    assert_eq!(
        login(&other, &reg, "carol", "carol-pw").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        login(&alice, &reg, "alice", "alice-pw").await.status(),
        StatusCode::OK,
        "a cached successful login is not throttled"
    );
}

/// Finding 5: with auth on, `/metrics` takes a login (unless
/// `metrics_anonymous`), `/readyz` says only `ok`, `/livez` stays anonymous.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_take_a_login_and_health_endpoints_reveal_nothing() {
    let reg = serve("", "");
    let client = Client::new();
    let r = client.get(reg.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    let r = client
        .get(reg.url("/metrics"))
        .basic_auth("carol", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client
        .get(reg.url("/metrics"))
        .basic_auth(CAROL.0, Some(CAROL.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("strata_storage_bytes"));
    for path in ["/livez", "/readyz"] {
        let r = client.get(reg.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.text().await.unwrap(), "ok\n", "{path}");
    }

    let open = serve("metrics_anonymous = true", "");
    let r = client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Send a request head and part of its body, then stall.
fn stalled_put(addr: SocketAddr, path: &str, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = base64_basic(ALICE);
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: {OCI_MANIFEST}\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    s.write_all(&vec![b' '; sent]).unwrap();
    s
}

fn base64_basic((user, password): (&str, &str)) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Read a response until the server closes or `secs` pass.
fn response_of(mut s: TcpStream, secs: u64) -> String {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// Finding 3: stalled manifest PUTs hold memory only within a global byte
/// budget: with a 1 MiB budget, a second stalled 900 KiB body is refused
/// with 503 `UNAVAILABLE` and `Retry-After`, the stalled first one times out
/// with 408, and the budget is whole again for a normal push.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_manifest_bodies_share_a_bounded_budget_and_time_out() {
    let reg = serve(
        "",
        "manifest_body_budget_bytes = 1048576\nmanifest_body_timeout_secs = 5",
    );
    let first = stalled_put(reg.addr, "/v2/team/a/manifests/one", 3_900_000, 900_000);
    std::thread::sleep(Duration::from_millis(300));
    let second = stalled_put(reg.addr, "/v2/team/a/manifests/two", 3_900_000, 900_000);
    let second = response_of(second, 20);
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("retry-after"),
        "{second}"
    );
    assert!(second.contains("UNAVAILABLE"), "{second}");
    let first = response_of(first, 20);
    assert!(first.starts_with("HTTP/1.1 408"), "{first}");

    let config = push_blob(&reg, "team/a", ALICE, b"{}").await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [], "annotations": {"pad": "x".repeat(700_000)}}))
    .unwrap();
    let r = Client::new()
        .put(reg.url("/v2/team/a/manifests/ok"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn connect_from(ip: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Hold `n` connections from `ip`, each admitted for sure (one whole
/// request answered on it first, kept alive), then half a request head sent.
/// A connection turned away is tried again a little later: the place of one
/// the server closed just before (an [`exchange`]) is given back once the
/// server notices.
async fn hold(ip: &str, to: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..n {
        let mut tries = 0;
        let (mut s, answered) = loop {
            let (s, answered) = admitted(ip, to).await;
            tries += 1;
            if !answered.starts_with("http/1.1 503") || tries == 50 {
                break (s, answered);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(answered.starts_with("http/1.1 401"), "{answered}");
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    held
}

/// A connection from `ip` and the (lowercased) answer to one whole request
/// on it, the connection kept.
async fn admitted(ip: &str, to: SocketAddr) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(ip, to).await;
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break text;
            }
        }
    };
    (s, answered)
}

/// How many of `held` the server has not closed.
fn still_open(held: &[tokio::net::TcpStream]) -> usize {
    let mut buf = [0u8; 1];
    held.iter()
        .filter(|s| matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count()
}

/// Send a whole request from `ip` and read the answer until the server closes.
async fn exchange(ip: &str, to: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(ip, to).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes()).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Ask until the answer starts with `status` (a closed connection's place
/// is given back once the server notices); the last answer.
async fn eventually(ip: &str, to: SocketAddr, path: &str, status: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = exchange(ip, to, path).await;
        if last.starts_with(status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Finding 2: connections past the per-client cap, then past the total
/// cap, get a fixed 503 with `Retry-After` without being read; `/livez`
/// still answers on the reserved slice; once the stalled sockets go, normal
/// requests are served again.
#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_caps_get_503_and_livez_still_answers() {
    let reg = serve(
        "",
        "max_connections = 40\nmax_connections_per_client = 15\nreserved_livez_connections = 4",
    );
    let mut held = hold("127.0.0.2", reg.addr, 15).await;
    let busy = exchange("127.0.0.2", reg.addr, "/v2/").await;
    assert!(
        busy.starts_with("HTTP/1.1 503"),
        "per client ({} of 15 held sockets still open): {busy}",
        still_open(&held)
    );
    assert!(busy.contains("Retry-After: 1"), "{busy}");
    assert!(busy.contains("UNAVAILABLE"), "{busy}");
    let other = exchange("127.0.0.3", reg.addr, "/v2/").await;
    assert!(other.starts_with("HTTP/1.1 401"), "another client: {other}");

    held.extend(hold("127.0.0.3", reg.addr, 15).await);
    held.extend(hold("127.0.0.4", reg.addr, 10).await);
    let busy = exchange("127.0.0.1", reg.addr, "/v2/").await;
    assert!(
        busy.starts_with("HTTP/1.1 503"),
        "in all ({} of 40 held sockets still open): {busy}",
        still_open(&held)
    );
    let live = exchange("127.0.0.1", reg.addr, "/livez").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(live.ends_with("ok\n"), "{live}");
    let busy = exchange("127.0.0.1", reg.addr, "/v2/_catalog").await;
    assert!(
        busy.starts_with("HTTP/1.1 503"),
        "the reserve serves /livez only: {busy}"
    );

    drop(held);
    let back = eventually("127.0.0.1", reg.addr, "/v2/", "HTTP/1.1 401").await;
    assert!(back.starts_with("HTTP/1.1 401"), "{back}");
}
