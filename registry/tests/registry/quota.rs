//! Quotas through the real server: a push that would cross `max_bytes` is
//! `DENIED` at the right byte with used/limit in the message and leaves
//! nothing behind, a blob counts once, crossing `warn_percent` sends a
//! `quota_warning` event, `registry usage` and `/metrics` agree with the
//! bytes pushed, and usage is exact again after a delete and GC, even for
//! a layer another repository keeps.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::events::{metrics, Receiver};
use crate::harness::{push_blob, sha256, OCI_MANIFEST};
use crate::policy::{put, serve_with};

/// `registry usage --json` with the configuration in `dir`.
fn usage(dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["usage", "--json", "--config"])
        .arg(dir.join("registry.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "registry usage: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all["quotas"][0].clone()
}

/// POST a whole blob; the status and the error body.
async fn try_push(reg: &crate::harness::Registry, repo: &str, data: &[u8]) -> (StatusCode, Value) {
    let r = Client::new()
        .post(reg.url(&format!(
            "/v2/{repo}/blobs/uploads/?digest={}",
            sha256(data)
        )))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_denies_at_the_byte_and_usage_is_exact_after_delete_and_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The image, made before the server starts so the limit can be exact.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![b'L'; 1000];
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let image = (config.len() + layer.len() + manifest.len()) as u64;
    let limit = image + 10;
    let hook = Receiver::start(0, false);
    let reg = serve_with(
        dir,
        &format!(
            "data = \"{}\"\n[gc]\ngrace_secs = 0\n\n\
             [[quota]]\nrepositories = \"team-a/**\"\nmax_bytes = {limit}\nwarn_percent = 50\n\n\
             [[webhook]]\nurl = \"{}\"\nevents = [\"quota_warning\"]\n",
            dir.join("data").display(),
            hook.url
        ),
    );

    // The layer takes team-a past half its budget: one warning.
    push_blob(&reg, "team-a/app", &config).await;
    push_blob(&reg, "team-a/app", &layer).await;
    let v1 = put(&reg, None, "team-a/app", "v1", &manifest).await;
    assert_eq!(v1.0, StatusCode::CREATED, "{}", v1.1);
    let warning = hook.wait_for(1)[0].json();
    assert_eq!(warning["type"], "io.strata.registry.quota_warning");
    assert_eq!(warning["data"]["quota"], "team-a/**");
    assert_eq!(warning["data"]["limit"], limit);
    assert_eq!(warning["data"]["used"], (config.len() + layer.len()) as u64);

    // 11 bytes more would cross the limit by one: denied, and nothing stays.
    let eleven = b"eleven byte".to_vec();
    let (status, body) = try_push(&reg, "team-a/other", &eleven).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("team-a/**") && message.contains("exceeded"),
        "{message}"
    );
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "used {image} bytes, limit {limit} bytes, needed 11 bytes"
        )),
        "{detail}"
    );
    let head = Client::new()
        .head(reg.url(&format!("/v2/team-a/other/blobs/{}", sha256(&eleven))))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    // The same through a session: the session is gone after the refusal.
    let started = Client::new()
        .post(reg.url("/v2/team-a/other/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = reg.url(started.headers()[header::LOCATION].to_str().unwrap());
    let sep = if location.contains('?') { '&' } else { '?' };
    let finished = Client::new()
        .put(format!("{location}{sep}digest={}", sha256(&eleven)))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(eleven.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::FORBIDDEN);
    let status = Client::new().get(&location).send().await.unwrap();
    assert_eq!(
        status.status(),
        StatusCode::NOT_FOUND,
        "the refused session is gone"
    );

    // Ten bytes fit exactly; a mount of a layer team-a holds adds nothing.
    let ten = b"ten bytes!".to_vec();
    assert_eq!(
        try_push(&reg, "team-a/other", &ten).await.0,
        StatusCode::CREATED
    );
    let mount = Client::new()
        .post(reg.url(&format!(
            "/v2/team-a/other/blobs/uploads/?mount={}&from=team-a/app",
            sha256(&layer)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), StatusCode::CREATED);
    // Another repository, under no quota, keeps the same image.
    push_blob(&reg, "other/app", &config).await;
    push_blob(&reg, "other/app", &layer).await;
    assert_eq!(
        put(&reg, None, "other/app", "v1", &manifest).await.0,
        StatusCode::CREATED
    );

    let u = usage(dir);
    assert_eq!(u["used"], limit);
    assert_eq!(u["limit"], limit);
    assert_eq!(u["percent"], 100);
    assert_eq!(u["logical"], limit + layer.len() as u64);
    assert_eq!(u["dedup_saving"], layer.len() as u64);
    assert_eq!(
        u["repos"],
        json!([{"name": "team-a/app", "bytes": image},
               {"name": "team-a/other", "bytes": 10 + layer.len()}])
    );
    let text = metrics(&reg).await;
    assert!(
        text.contains(&format!(
            "strata_quota_used_bytes{{quota=\"team-a/**\"}} {limit}\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "strata_quota_limit_bytes{{quota=\"team-a/**\"}} {limit}\n"
    )));

    // Delete team-a's image, GC: usage drops to zero although other/app
    // still holds (and serves) the very same layer.
    let deleted = Client::new()
        .delete(reg.url(&format!("/v2/team-a/app/manifests/{}", sha256(&manifest))))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    // Links are dated in whole seconds: let this one pass.
    std::thread::sleep(Duration::from_millis(1100));
    let gc = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["gc", "--config"])
        .arg(dir.join("registry.toml"))
        .output()
        .unwrap();
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let u = usage(dir);
    assert_eq!(u["used"], 0, "{u}");
    assert_eq!(u["repos"], json!([]));
    let layer_of_other = Client::new()
        .get(reg.url(&format!("/v2/other/app/blobs/{}", sha256(&layer))))
        .send()
        .await
        .unwrap();
    assert_eq!(layer_of_other.status(), StatusCode::OK);
    assert_eq!(layer_of_other.bytes().await.unwrap().len(), layer.len());
    // And the budget is free again.
    assert_eq!(
        try_push(&reg, "team-a/other", &eleven).await.0,
        StatusCode::CREATED
    );
}
