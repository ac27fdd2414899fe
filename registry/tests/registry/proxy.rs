//! Behind a reverse proxy: `Forwarded` and `X-Forwarded-*` from a trusted
//! proxy set the token realm's scheme and host and the client address that
//! the log and the failed-login limit use; from anybody else they are
//! ignored, so a client cannot spoof them. (The real nginx and HAProxy in
//! front, with TLS and real clients, are `conformance/interop.sh`'s proxy
//! modes.)

use reqwest::{header, Client, StatusCode};

use crate::harness::{add_user, Registry};

const CONFIG: &str = r#"
[auth]
htpasswd = "htpasswd"
failed_login_burst = 2
failed_logins_per_minute = 0.5
"#;

fn serve(trusted: Option<&str>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "carol");
    std::fs::write(dir.path().join("strata.toml"), CONFIG).unwrap();
    let mut args = vec!["--config", "strata.toml"];
    if let Some(cidr) = trusted {
        args.extend(["--trusted-proxy", cidr]);
    }
    Registry::launch_owning(dir)
        .data()
        .args(args)
        .log_level("info")
        .log_file()
        .start()
}

async fn challenge(reg: &Registry, headers: &[(&str, &str)]) -> String {
    let mut req = Client::new().get(reg.url("/v2/"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A login at `/v2/` as `user` from the client address `forwarded_for`.
async fn login(reg: &Registry, user: &str, password: &str, forwarded_for: &str) -> StatusCode {
    Client::new()
        .get(reg.url("/v2/"))
        .basic_auth(user, Some(password))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_sets_the_realm_and_the_client_address() {
    let mut reg = serve(Some("127.0.0.1/32"));
    // nginx's usual headers: the realm is the address the client used.
    let c = challenge(
        &reg,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "registry.example:8443"),
            ("x-forwarded-for", "203.0.113.5"),
        ],
    )
    .await;
    assert!(
        c.starts_with("Bearer realm=\"https://registry.example:8443/token\""),
        "{c}"
    );
    // RFC 7239.
    let c = challenge(
        &reg,
        &[(
            "forwarded",
            "for=203.0.113.5;proto=https;host=\"reg.example:443\"",
        )],
    )
    .await;
    assert!(
        c.starts_with("Bearer realm=\"https://reg.example:443/token\""),
        "{c}"
    );
    // No forwarding headers: the request's own scheme and Host.
    let c = challenge(&reg, &[]).await;
    assert!(
        c.starts_with(&format!("Bearer realm=\"{}/token\"", reg.base)),
        "{c}"
    );
    // Failed logins count per client address: 203.0.113.1 is throttled after
    // its burst, even for a right password, while 203.0.113.2 logs in.
    for user in ["nobody1", "nobody2", "nobody3"] {
        login(&reg, user, "wrong", "203.0.113.1").await;
    }
    assert_eq!(
        login(&reg, "carol", "carol-pw", "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&reg, "carol", "carol-pw", "203.0.113.2").await,
        StatusCode::OK
    );
    reg.terminate();
    let log = reg.log();
    assert!(log.contains("client=203.0.113.2"), "{log}");
    // Only the request without forwarding headers is logged as the proxy's.
    assert_eq!(log.matches("client=127.0.0.1 ").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // By default no proxy is trusted; here, one that is not us.
    for trusted in [None, Some("10.0.0.0/8")] {
        let mut reg = serve(trusted);
        let c = challenge(
            &reg,
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                (
                    "forwarded",
                    "for=198.51.100.9;proto=https;host=evil.example",
                ),
            ],
        )
        .await;
        assert!(
            c.starts_with(&format!("Bearer realm=\"{}/token\"", reg.base)),
            "{c}"
        );
        // A spoofed address does not dodge the failed-login limit.
        for (user, spoofed) in [
            ("n1", "198.51.100.1"),
            ("n2", "198.51.100.2"),
            ("n3", "198.51.100.3"),
        ] {
            login(&reg, user, "wrong", spoofed).await;
        }
        assert_eq!(
            login(&reg, "carol", "carol-pw", "198.51.100.4").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        reg.terminate();
        let log = reg.log();
        assert!(log.contains("client=127.0.0.1"), "{log}");
        assert!(!log.contains("client=198.51.100"), "{log}");
    }
}

#[test]
fn a_bad_trusted_proxy_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data", "data"])
        .args(["--trusted-proxy", "10.0.0.0/33"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trusted_proxies: \"10.0.0.0/33\" is neither an address nor a CIDR"),
        "{err}"
    );
}
