//! SIGHUP reloads the configuration on the real server: a user added to the
//! htpasswd file can log in, a removed one cannot; trusted proxies and the
//! rate limit change; a config that does not load or build is refused and
//! the old one kept; settings read only at start are named in a warning.

use reqwest::{header, Client, StatusCode};

use crate::harness::{add_user, Registry};

const AUTH: &str = r#"
[auth]
htpasswd = "htpasswd"
"#;

const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration reload failed; the old configuration stays in force";

fn serve(config: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "alice");
    std::fs::write(dir.path().join("strata.toml"), config).unwrap();
    Registry::launch_owning(dir)
        .data()
        .args(["--config", "strata.toml"])
        .log_level("info")
        .log_file()
        .start()
}

async fn login(reg: &Registry, user: &str) -> StatusCode {
    Client::new()
        .get(reg.url("/v2/"))
        .basic_auth(user, Some(format!("{user}-pw")))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_htpasswd_users_and_a_broken_config_keeps_the_old_one() {
    let reg = serve(AUTH);
    assert_eq!(login(&reg, "alice").await, StatusCode::OK);
    assert_eq!(login(&reg, "dave").await, StatusCode::UNAUTHORIZED);

    // dave is added to the file: unknown until the reload, then welcome.
    add_user(&reg.dir, "dave");
    assert_eq!(login(&reg, "dave").await, StatusCode::UNAUTHORIZED);
    reg.hangup();
    reg.wait_for_log(RELOADED, 1);
    assert_eq!(login(&reg, "dave").await, StatusCode::OK);
    assert_eq!(login(&reg, "alice").await, StatusCode::OK);

    // A config that is not TOML: refused, alice and dave still log in.
    let config = reg.dir.join("strata.toml");
    std::fs::write(&config, "[auth\nhtpasswd = ").unwrap();
    reg.hangup();
    reg.wait_for_log(REFUSED, 1);
    assert!(reg.log().contains("invalid config"), "{}", reg.log());
    assert_eq!(login(&reg, "dave").await, StatusCode::OK);

    // Valid TOML whose htpasswd file is missing: refused at build, kept.
    std::fs::write(&config, "[auth]\nhtpasswd = \"missing-htpasswd\"\n").unwrap();
    reg.hangup();
    reg.wait_for_log(REFUSED, 2);
    assert!(reg.log().contains("cannot read htpasswd"), "{}", reg.log());
    assert_eq!(login(&reg, "dave").await, StatusCode::OK);
    assert_eq!(login(&reg, "alice").await, StatusCode::OK);

    // A good config again, with alice gone from the file: her cached
    // login does not outlive the reload.
    let htpasswd = std::fs::read_to_string(reg.dir.join("htpasswd")).unwrap();
    let without_alice: String = htpasswd
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(reg.dir.join("htpasswd"), without_alice).unwrap();
    std::fs::write(&config, AUTH).unwrap();
    reg.hangup();
    reg.wait_for_log(RELOADED, 2);
    assert_eq!(login(&reg, "alice").await, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&reg, "dave").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_trusted_proxies_and_names_what_needs_a_restart() {
    let reg = serve(AUTH);
    let realm = || async {
        let r = Client::new()
            .get(reg.url("/v2/"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "registry.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // Not trusted yet: the forwarded scheme and host are ignored.
    assert!(
        realm()
            .await
            .starts_with(&format!("Bearer realm=\"{}/token\"", reg.base)),
        "{}",
        realm().await
    );

    // Trusted after the reload; the new listen address and GC interval
    // need a restart, and the warning says so (the old address still serves).
    std::fs::write(
        reg.dir.join("strata.toml"),
        format!(
            "listen = \"127.0.0.1:1\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n[gc]\ninterval_secs = 60\n{AUTH}"
        ),
    )
    .unwrap();
    reg.hangup();
    reg.wait_for_log(RELOADED, 1);
    let challenge = realm().await;
    assert!(
        challenge.starts_with("Bearer realm=\"https://registry.example/token\""),
        "{challenge}"
    );
    let log = reg.log();
    let warning = log
        .lines()
        .find(|l| l.contains(RELOADED))
        .expect("the reload's line");
    assert!(warning.contains("needs_restart"), "{warning}");
    assert!(warning.contains("gc"), "{warning}");
    assert!(
        !warning.contains("listen"),
        "flags override the file's listen: {warning}"
    );
    assert_eq!(login(&reg, "alice").await, StatusCode::OK);

    // A rate limit of one request and then one per 1000 s: the next
    // request after the reload passes, the one after it gets 429.
    std::fs::write(
        reg.dir.join("strata.toml"),
        format!("[limits]\nrate_per_second = 0.001\nburst = 1\n{AUTH}"),
    )
    .unwrap();
    reg.hangup();
    reg.wait_for_log(RELOADED, 2);
    assert_eq!(login(&reg, "alice").await, StatusCode::OK);
    assert_eq!(login(&reg, "alice").await, StatusCode::TOO_MANY_REQUESTS);
}

/// A throwaway CA in `dir/NAME-ca.pem` and a certificate for 127.0.0.1
/// it signed in `dir/NAME.pem` and `NAME.key` (webpki takes no CA
/// certificate as a server's own).
fn certificate(dir: &std::path::Path, name: &str) {
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    };
    let (ca_key, ca, key, csr, pem) = (
        format!("{name}-ca.key"),
        format!("{name}-ca.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subject = format!("/CN={name} CA");
    openssl(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", &ca_key, "-out",
        &ca, "-subj", &subject,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
}

/// Whether a new client that trusts only the CA `dir/NAME-ca.pem` gets an answer.
async fn trusted_by(reg: &Registry, name: &str) -> bool {
    let pem = std::fs::read(reg.dir.join(format!("{name}-ca.pem"))).unwrap();
    let client = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    client.get(reg.url("/livez")).send().await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_tls_certificate_and_keeps_it_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["old", "new"] {
        certificate(dir.path(), name);
    }
    let dir_path = dir.path().to_path_buf();
    let copy = |from: &str| {
        for ext in ["pem", "key"] {
            std::fs::copy(
                dir_path.join(format!("{from}.{ext}")),
                dir_path.join(format!("tls.{ext}")),
            )
            .unwrap();
        }
    };
    copy("old");
    let reg = Registry::launch_owning(dir)
        .data()
        .args(["--tls-cert", "tls.pem", "--tls-key", "tls.key"])
        .log_level("info")
        .log_file()
        .https()
        .start();
    assert!(trusted_by(&reg, "old").await);
    assert!(!trusted_by(&reg, "new").await);

    // A renewed certificate in the same files: new connections get it.
    copy("new");
    reg.hangup();
    reg.wait_for_log(RELOADED, 1);
    assert!(trusted_by(&reg, "new").await);
    assert!(!trusted_by(&reg, "old").await);

    // A certificate file that is not PEM: refused, the new one stays.
    std::fs::write(dir_path.join("tls.pem"), "not a certificate\n").unwrap();
    reg.hangup();
    reg.wait_for_log(REFUSED, 1);
    assert!(trusted_by(&reg, "new").await);
}
