//! Authentication, access control and TLS, against the real `registry` binary.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{add_user, error_code, sha256, Registry};

/// A temp dir with an htpasswd file for alice, bob and carol (password = name + "-pw").
fn users() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for user in ["alice", "bob", "carol"] {
        add_user(dir.path(), user);
    }
    dir
}

const RULES: &str = r#"
[auth]
htpasswd = "htpasswd"
[auth.groups]
readers = ["bob"]
[[auth.rules]]
repositories = ["team/**"]
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repositories = ["team/**"]
groups = ["readers"]
actions = ["pull"]
[[auth.rules]]
repositories = ["public/*"]
anonymous = true
users = ["alice"]
actions = ["pull"]
[[auth.rules]]
repositories = ["public/*"]
users = ["alice"]
actions = ["push"]
"#;

/// A registry in `dir` (removed with it), data in `data/`, logging at
/// `debug` to `dir/log`, with `args`, speaking `scheme`.
fn serve(dir: tempfile::TempDir, args: &[&str], scheme: &str) -> Registry {
    let launch = Registry::launch_owning(dir)
        .data()
        .args(args)
        .log_level("debug")
        .log_file();
    match scheme {
        "https" => launch.https().start(),
        _ => launch.start(),
    }
}

fn with_rules() -> Registry {
    let dir = users();
    std::fs::write(dir.path().join("strata.toml"), RULES).unwrap();
    serve(dir, &["--config", "strata.toml"], "http")
}

async fn push_blob(reg: &Registry, repo: &str, user: (&str, &str), data: &[u8]) -> StatusCode {
    Client::new()
        .post(reg.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            sha256(data)
        )))
        .basic_auth(user.0, Some(user.1))
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

async fn token(reg: &Registry, user: Option<(&str, &str)>, scope: &str) -> String {
    let mut req = Client::new().get(reg.url(&format!("/token?service=strata&scope={scope}")));
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["expires_in"].as_u64().unwrap() >= 60);
    assert_eq!(v["token"], v["access_token"]);
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_flag_alone_requires_login_and_grants_everything() {
    let dir = users();
    let reg = serve(dir, &["--htpasswd", "htpasswd"], "http");
    let r = Client::new()
        .get(reg.url("/v2/some/repo/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}/token\"", reg.base)),
        "{challenge}"
    );
    assert!(challenge.contains("service=\"strata\""));
    assert!(challenge.contains("scope=\"repository:some/repo:pull\""));
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    assert_eq!(
        push_blob(&reg, "any/repo", ("carol", "carol-pw"), b"x").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&reg, "any/repo", ("carol", "wrong"), b"x").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push_blob(&reg, "any/repo", ("mallory", "carol-pw"), b"x").await,
        StatusCode::UNAUTHORIZED
    );
    let r = Client::new()
        .get(reg.url("/v2/"))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = Client::new()
        .delete(reg.url(&format!("/v2/any/repo/blobs/{}", sha256(b"x"))))
        .basic_auth("bob", Some("bob-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_flow_grants_only_the_scopes_asked_and_permitted() {
    let reg = with_rules();
    let t = token(
        &reg,
        Some(("alice", "alice-pw")),
        "repository:team/app:pull,push",
    )
    .await;
    let data = b"layer";
    let r = Client::new()
        .post(reg.url(&format!(
            "/v2/team/app/blobs/uploads/?digest={}",
            sha256(data)
        )))
        .bearer_auth(&t)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The same token does not open another repository, even one alice may use.
    let r = Client::new()
        .get(reg.url("/v2/team/other/tags/list"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // bob may only pull: a token asked for push carries pull alone, and pushing is denied.
    let t = token(
        &reg,
        Some(("bob", "bob-pw")),
        "repository:team/app:pull,push",
    )
    .await;
    let r = Client::new()
        .head(reg.url(&format!("/v2/team/app/blobs/{}", sha256(data))))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = Client::new()
        .post(reg.url("/v2/team/app/blobs/uploads/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "DENIED");
    // OAuth2 password form.
    let r = Client::new()
        .post(reg.url("/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pw"),
            ("service", "strata"),
            ("scope", "repository:team/app:pull"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let r = Client::new()
        .get(reg.url("/v2/team/app/tags/list"))
        .bearer_auth(v["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    let r = Client::new()
        .get(reg.url("/token?scope=x"))
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_repository_rules_users_groups_anonymous_and_catalog() {
    let reg = with_rules();
    assert_eq!(
        push_blob(&reg, "team/app", ("alice", "alice-pw"), b"a").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&reg, "public/base", ("alice", "alice-pw"), b"b").await,
        StatusCode::CREATED
    );
    assert_eq!(
        push_blob(&reg, "team/app", ("bob", "bob-pw"), b"c").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        push_blob(&reg, "elsewhere", ("alice", "alice-pw"), b"d").await,
        StatusCode::FORBIDDEN
    );
    let anon_pull = |repo: &str, d: String| {
        Client::new()
            .head(reg.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
    };
    assert_eq!(
        anon_pull("public/base", sha256(b"b"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        anon_pull("team/app", sha256(b"a")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // An anonymous token carries only what anonymous clients may do.
    let t = token(&reg, None, "repository:public/base:pull,push").await;
    let r = Client::new()
        .post(reg.url("/v2/public/base/blobs/uploads/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // carol has no rule at all: authenticated, so 403.
    let r = Client::new()
        .get(reg.url("/v2/team/app/tags/list"))
        .basic_auth("carol", Some("carol-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "DENIED");
    let catalog = |user: &str| {
        Client::new()
            .get(reg.url("/v2/_catalog"))
            .basic_auth(user, Some(format!("{user}-pw")))
            .send()
    };
    let v: Value = catalog("bob").await.unwrap().json().await.unwrap();
    assert_eq!(v["repositories"], json!(["team/app"]));
    let v: Value = catalog("alice").await.unwrap().json().await.unwrap();
    assert_eq!(v["repositories"], json!(["public/base", "team/app"]));
    let v: Value = catalog("carol").await.unwrap().json().await.unwrap();
    assert_eq!(v["repositories"], json!([]));
    let r = Client::new()
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

fn forge(key: &[u8], claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!(
        "{h}.{p}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_and_expired_tokens_are_rejected() {
    let reg = with_rules();
    let good = token(&reg, Some(("bob", "bob-pw")), "repository:team/app:pull").await;
    let get = |t: String| {
        Client::new()
            .get(reg.url("/v2/team/app/tags/list"))
            .bearer_auth(t)
            .send()
    };
    assert_ne!(
        get(good.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |exp: u64, actions: &[&str]| {
        json!({"iss": "strata", "sub": "bob", "aud": "strata", "exp": exp, "nbf": 0, "iat": 0, "jti": "t",
               "access": [{"type": "repository", "name": "team/app", "actions": actions}]})
    };
    // Payload swapped for one granting push, signature kept.
    let parts: Vec<&str> = good.split('.').collect();
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now + 600, &["pull", "push"])).unwrap());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(
        get(tampered).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(forge(b"guessed key", &claims(now + 600, &["pull"])))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("not.a.token".into()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // With the real key, only an unexpired token works: the key lives in the database.
    let data = store::StoreConfig::local(&reg.dir.join("data"));
    let key = store::Store::open(&data)
        .await
        .unwrap()
        .secret("token-hmac-key", "unused")
        .await
        .unwrap();
    assert_ne!(key, "unused");
    let r = get(forge(key.as_bytes(), &claims(now + 600, &["pull"])))
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::UNAUTHORIZED);
    let r = get(forge(key.as_bytes(), &claims(now - 1, &["pull"])))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
    // A token with a wrong scope: bob's token for team/app used to delete.
    let r = Client::new()
        .delete(reg.url(&format!("/v2/team/app/manifests/{}", sha256(b"m"))))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// A wrong password says so in the error's message, which is all `docker
/// login` shows (`unauthorized: invalid username or password`).
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_named_in_the_error_message() {
    let reg = with_rules();
    let message = |r: reqwest::Response| async move {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let v: Value = r.json().await.unwrap();
        v["errors"][0]["message"].as_str().unwrap().to_owned()
    };
    let r = Client::new().get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(message(r).await, "authentication required");
    for path in [
        "/v2/",
        "/token?service=strata&scope=repository:team/app:pull",
    ] {
        let r = Client::new()
            .get(reg.url(path))
            .basic_auth("alice", Some("not-her-password"))
            .send()
            .await
            .unwrap();
        assert_eq!(message(r).await, "invalid username or password", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_the_log() {
    let mut reg = with_rules();
    let t = token(
        &reg,
        Some(("alice", "alice-pw")),
        "repository:team/app:pull",
    )
    .await;
    Client::new()
        .get(reg.url("/v2/team/app/tags/list"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    Client::new()
        .get(reg.url("/v2/"))
        .basic_auth("alice", Some("wrong-secret"))
        .send()
        .await
        .unwrap();
    assert!(reg.terminate().success());
    let log = reg.log();
    assert!(
        log.contains("/v2/team/app/tags/list"),
        "requests are logged"
    );
    for secret in [
        "alice-pw",
        "wrong-secret",
        t.as_str(),
        t.split('.').nth(2).unwrap(),
    ] {
        assert!(!log.contains(secret), "log leaks a secret");
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_throwaway_ca() {
    let dir = users();
    let p = dir.path();
    openssl(
        p,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=strata test CA",
        ],
    );
    openssl(
        p,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(p.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(p.join("ca.pem")).unwrap()).unwrap();
    let reg = serve(
        dir,
        &[
            "--tls-cert",
            "tls.pem",
            "--tls-key",
            "tls.key",
            "--htpasswd",
            "htpasswd",
        ],
        "https",
    );
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let r = client.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!("realm=\"{}/token\"", reg.base)),
        "{challenge}"
    );
    let data = b"over tls";
    let r = client
        .post(reg.url(&format!("/v2/tls/blobs/uploads/?digest={}", sha256(data))))
        .basic_auth("alice", Some("alice-pw"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A client that does not trust the CA refuses the connection.
    assert!(Client::new().get(reg.url("/v2/")).send().await.is_err());
    // Plain HTTP to the TLS port gets a plain 400 naming the https:// URL.
    let mut conn = std::net::TcpStream::connect(reg.addr).unwrap();
    write!(conn, "GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n", reg.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let wanted = format!("this port speaks HTTPS: use https://{}", reg.addr);
    assert!(answer.contains(&wanted), "{answer}");
    // And the port still speaks TLS.
    let r = client.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
