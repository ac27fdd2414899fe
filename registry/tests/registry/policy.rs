//! Repository policies and the audit log: immutable tags refuse a different
//! manifest, a tag delete and a delete of the manifest such a tag points
//! to, and allow the identical push again; every write and every refusal
//! lands in the audit file, which `registry audit` filters.

use std::path::Path;
use std::process::Command;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::harness::{add_user, push_blob_as, sha256, Registry, OCI_MANIFEST};

/// Push a config and a layer to `repo` (as `who`), and return the bytes of
/// an image manifest referring to them.
pub async fn image(reg: &Registry, repo: &str, who: Option<(&str, &str)>, seed: &str) -> Vec<u8> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
    let layer = format!("layer-{seed}");
    let cd = push_blob_as(reg, repo, who, config.as_bytes()).await;
    let ld = push_blob_as(reg, repo, who, layer.as_bytes()).await;
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))
    .unwrap()
}

/// PUT a manifest; the status and the body as JSON (`null` when empty).
pub async fn put(
    reg: &Registry,
    who: Option<(&str, &str)>,
    repo: &str,
    reference: &str,
    bytes: &[u8],
) -> (StatusCode, Value) {
    let mut r = Client::new()
        .put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(bytes.to_vec());
    if let Some((u, p)) = who {
        r = r.basic_auth(u, Some(p));
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// DELETE a manifest or tag; the status and the body as JSON.
async fn delete(reg: &Registry, repo: &str, reference: &str) -> (StatusCode, Value) {
    let r = Client::new()
        .delete(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The digest `repo:tag` resolves to.
async fn resolve(reg: &Registry, repo: &str, tag: &str) -> String {
    let r = Client::new()
        .head(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A registry in `dir` with `config` as its configuration file.
pub fn serve_with(dir: &Path, config: &str) -> Registry {
    std::fs::write(dir.join("registry.toml"), config).unwrap();
    Registry::launch(dir)
        .data()
        .args(["--config".as_ref(), dir.join("registry.toml").as_os_str()])
        .start()
}

/// `registry audit ARGS` with the configuration in `dir`; its stdout lines as JSON.
fn audit(dir: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("audit")
        .arg("--config")
        .arg(dir.join("registry.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "registry audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_tags_refuse_overwrite_and_delete_but_allow_the_same_push() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = serve_with(
        dir,
        &format!(
            "[[immutable]]\nrepositories = \"prod/**\"\ntags = \"v*\"\n\n[audit]\nfile = \"{}\"\n",
            dir.join("audit.log").display()
        ),
    );
    let a = image(&reg, "prod/app", None, "a").await;
    let b = image(&reg, "prod/app", None, "b").await;
    assert_eq!(
        put(&reg, None, "prod/app", "v1", &a).await.0,
        StatusCode::CREATED
    );
    // A CI re-run pushing the same manifest again is fine.
    assert_eq!(
        put(&reg, None, "prod/app", "v1", &a).await.0,
        StatusCode::CREATED
    );

    let (status, body) = put(&reg, None, "prod/app", "v1", &b).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("prod/**") && message.contains("v*"),
        "{message}"
    );
    // The same through the tag parameter of a push by digest.
    let (status, _) = put(
        &reg,
        None,
        "prod/app",
        &format!("{}?tag=v1", sha256(&b)),
        &b,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(resolve(&reg, "prod/app", "v1").await, sha256(&a));

    let (status, body) = delete(&reg, "prod/app", "v1").await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("DENIED"))
    );
    let (status, body) = delete(&reg, "prod/app", &sha256(&a)).await;
    assert_eq!(
        (status, body["errors"][0]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("DENIED"))
    );
    assert_eq!(resolve(&reg, "prod/app", "v1").await, sha256(&a));

    // Tags the rule does not cover move and go as usual.
    assert_eq!(
        put(&reg, None, "prod/app", "latest", &a).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&reg, None, "prod/app", "latest", &b).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        delete(&reg, "prod/app", "latest").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        delete(&reg, "prod/app", &sha256(&b)).await.0,
        StatusCode::ACCEPTED
    );
    let c = image(&reg, "staging/app", None, "c").await;
    let d = image(&reg, "staging/app", None, "d").await;
    assert_eq!(
        put(&reg, None, "staging/app", "v1", &c).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        put(&reg, None, "staging/app", "v1", &d).await.0,
        StatusCode::CREATED
    );

    // The refusals are in the audit log, with the rule.
    let denied = audit(dir, &["--repository", "prod/**"])
        .into_iter()
        .filter(|e| e["result"] == "denied")
        .collect::<Vec<_>>();
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(denied.iter().all(|e| e["error"] == "DENIED"
        && e["message"].as_str().unwrap().contains("prod/**")
        && e["client"] == "127.0.0.1"));
    assert_eq!(
        denied
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["push", "push", "delete", "delete"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_log_records_writes_and_refusals_and_filters_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    add_user(dir, "alice");
    add_user(dir, "bob");
    let reg = serve_with(
        dir,
        &format!(
            "[audit]\nfile = \"{}\"\n[auth]\nhtpasswd = \"{}\"\n[[auth.rules]]\nrepositories = [\"alice/**\"]\nusers = [\"alice\"]\nactions = [\"*\"]\n",
            dir.join("audit.log").display(),
            dir.join("htpasswd").display()
        ),
    );
    let alice = Some(("alice", "alice-pw"));
    let m = image(&reg, "alice/app", alice, "x").await;
    assert_eq!(
        put(&reg, alice, "alice/app", "1", &m).await.0,
        StatusCode::CREATED
    );
    // A pull is not audited; a wrong password and a push without the right are.
    let r = Client::new()
        .get(reg.url("/v2/alice/app/manifests/1"))
        .header(header::ACCEPT, OCI_MANIFEST)
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _) = put(&reg, Some(("alice", "wrong")), "alice/app", "2", &m).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = put(&reg, Some(("bob", "bob-pw")), "alice/app", "3", &m).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let all = audit(dir, &[]);
    // 2 blob pushes + 1 manifest push by alice, then the two refusals.
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(all
        .iter()
        .all(|e| e["action"] == "push" && e["repository"] == "alice/app"));
    let ok: Vec<_> = all.iter().filter(|e| e["result"] == "ok").collect();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|e| e["user"] == "alice"));
    assert_eq!(all[3]["result"], "denied");
    assert_eq!(all[3]["user"], Value::Null);
    assert_eq!(all[3]["claimed_user"], "alice");
    assert_eq!(all[3]["status"], 401);
    // Refused before the caller is known: the name the client sent.
    assert_eq!(
        (&all[4]["claimed_user"], &all[4]["status"]),
        (&json!("bob"), &json!(403))
    );

    assert_eq!(audit(dir, &["--user", "bob"]).len(), 1);
    assert_eq!(audit(dir, &["--user", "alice"]).len(), 4);
    assert_eq!(audit(dir, &["--repository", "other/**"]).len(), 0);
    assert_eq!(audit(dir, &["--since", "1h"]).len(), 5);
    assert_eq!(audit(dir, &["--since", "2999-01-01"]).len(), 0);

    // A refused login at /token is audited too; a granted one is not.
    for (user, password, status) in [
        ("mallory", "guess", StatusCode::UNAUTHORIZED),
        ("alice", "alice-pw", StatusCode::OK),
    ] {
        let r = Client::new()
            .get(reg.url("/token?service=strata&scope=repository:alice/app:pull"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
    }
    let logins = audit(dir, &["--user", "mallory"]);
    assert_eq!(logins.len(), 1, "{logins:#?}");
    assert_eq!(
        (
            &logins[0]["action"],
            &logins[0]["path"],
            &logins[0]["result"]
        ),
        (&json!("login"), &json!("/token"), &json!("denied"))
    );
    assert_eq!(audit(dir, &[]).len(), 6);
    drop(reg);
}
