//! `[[retention]]`: `registry retention [--dry-run] [--json]` against a
//! running server's data, and the schedule inside `serve`. Each keep rule
//! keeps what it should and the rest goes with its reason; a manifest
//! stays while another tag, an index or an immutable tag keeps it; pulls
//! are recorded (GET, not HEAD) and flushed; a dry run changes nothing;
//! the schedule follows a SIGHUP, sends `retention` events and counts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use serde_json::{json, Value};

use crate::events::Receiver;
use crate::harness::{sha256, Registry, OCI_INDEX, OCI_MANIFEST};
use crate::policy::{image, put, serve_with};

/// `registry retention ARGS` on the data and configuration in `dir`: stdout.
fn retention(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("retention")
        .arg("--config")
        .arg(dir.join("registry.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(args)
        .env("STRATA_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "registry retention {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The report of `registry retention --json ARGS`.
fn retention_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&retention(dir, &all)).unwrap()
}

/// The tags of `repo`, sorted (none when the repository is gone).
async fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let r = Client::new()
        .get(reg.url(&format!("/v2/{repo}/tags/list")))
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

/// Whether `repo@digest` is still there.
async fn exists(reg: &Registry, repo: &str, digest: &str) -> bool {
    let r = Client::new()
        .head(reg.url(&format!("/v2/{repo}/manifests/{digest}")))
        .header(header::ACCEPT, format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    match r.status() {
        StatusCode::OK => true,
        StatusCode::NOT_FOUND => false,
        s => panic!("HEAD {repo}@{digest}: {s}"),
    }
}

/// Push a new image to `repo:reference`; its digest.
async fn push(reg: &Registry, repo: &str, reference: &str, seed: &str) -> String {
    let bytes = image(reg, repo, None, seed).await;
    let reference = if reference.is_empty() {
        sha256(&bytes)
    } else {
        reference.to_owned()
    };
    assert_eq!(
        put(reg, None, repo, &reference, &bytes).await.0,
        StatusCode::CREATED
    );
    sha256(&bytes)
}

/// Point `repo:tag` at the existing `digest`.
async fn tag(reg: &Registry, repo: &str, tag: &str, digest: &str) {
    let r = Client::new()
        .get(reg.url(&format!("/v2/{repo}/manifests/{digest}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        put(reg, None, repo, tag, &bytes).await.0,
        StatusCode::CREATED
    );
}

async fn delete(reg: &Registry, repo: &str, reference: &str) {
    let r = Client::new()
        .delete(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// Push times are kept in seconds: a second apart, pushes are ordered.
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Wait `secs` seconds and a bit: past a `delete_untagged_after` of `secs`
/// (times are whole seconds, so a bit more than one extra).
async fn past(secs: u64) {
    tokio::time::sleep(Duration::from_millis(secs * 1000 + 1200)).await;
}

fn rule(extra: &str) -> String {
    format!("[[retention]]\nrepositories = \"ci/**\"\n{extra}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_last_keeps_the_most_recently_pushed_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(tmp.path(), &rule("keep_last = 2"));
    let first = push(&reg, "ci/app", "build-1", "1").await;
    for n in 2..=3 {
        next_second().await;
        push(&reg, "ci/app", &format!("build-{n}"), &n.to_string()).await;
    }
    // Outside the rule's glob: untouched.
    push(&reg, "prod/app", "build-1", "p1").await;
    push(&reg, "prod/app", "build-2", "p2").await;
    push(&reg, "prod/app", "build-3", "p3").await;

    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains(&format!(
            "deleted tag ci/app:build-1 ({first}): not in the last 2 pushed; \
             [[retention]] repositories = \"ci/**\""
        )),
        "{out}"
    );
    assert!(
        out.contains("retention: deleted 1 tags and 0 manifests"),
        "{out}"
    );
    assert_eq!(tags(&reg, "ci/app").await, ["build-2", "build-3"]);
    assert_eq!(
        tags(&reg, "prod/app").await,
        ["build-1", "build-2", "build-3"]
    );
    // No delete_untagged_after: the untagged manifest stays.
    assert!(exists(&reg, "ci/app", &first).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_tags_and_several_tags_on_one_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(
        tmp.path(),
        &rule("keep_last = 1\nkeep_tags = [\"release-*\", \"latest\"]\ndelete_untagged_after = \"1s\""),
    );
    // One manifest, three tags: build-1 goes, release-1 and latest keep it.
    let shared = push(&reg, "ci/app", "build-1", "shared").await;
    tag(&reg, "ci/app", "release-1", &shared).await;
    tag(&reg, "ci/app", "latest", &shared).await;
    // A second later, so build-0 is newer than build-1 whatever the clock
    // does between the pushes, and the report's newest-first order is fixed.
    next_second().await;
    let other = push(&reg, "ci/app", "build-0", "other").await;
    let loose = push(&reg, "ci/app", "", "loose").await;
    next_second().await;
    let newest = push(&reg, "ci/app", "build-2", "newest").await;
    next_second().await;

    let report = retention_json(tmp.path(), &[]);
    let gone: Vec<String> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| match d["tag"].as_str() {
            Some(t) => format!("{}:{t}", d["repository"].as_str().unwrap()),
            None => format!(
                "{}@{}",
                d["repository"].as_str().unwrap(),
                d["digest"].as_str().unwrap()
            ),
        })
        .collect();
    assert_eq!(
        gone,
        [
            "ci/app:build-0".to_owned(),
            "ci/app:build-1".to_owned(),
            format!("ci/app@{loose}"),
        ],
        "{report:#}"
    );
    assert!(report["deleted"][2]["reason"]
        .as_str()
        .unwrap()
        .contains("over delete_untagged_after = 1s"));
    assert_eq!(
        tags(&reg, "ci/app").await,
        ["build-2", "latest", "release-1"]
    );
    assert!(exists(&reg, "ci/app", &shared).await);
    assert!(exists(&reg, "ci/app", &newest).await);
    assert!(!exists(&reg, "ci/app", &loose).await);

    // Later: the shared manifest is still kept by its other tags; the one
    // build-0 left goes once it has been untagged long enough.
    next_second().await;
    next_second().await;
    let report = retention_json(tmp.path(), &[]);
    assert_eq!(report["deleted"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(report["deleted"][0]["digest"], other.as_str());
    assert!(exists(&reg, "ci/app", &shared).await);
    assert_eq!(
        tags(&reg, "ci/app").await,
        ["build-2", "latest", "release-1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_keeps_its_child_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(
        tmp.path(),
        &rule("keep_tags = [\"multi\"]\ndelete_untagged_after = \"3s\""),
    );
    let child_bytes = image(&reg, "ci/multi", None, "child").await;
    let child = sha256(&child_bytes);
    assert_eq!(
        put(&reg, None, "ci/multi", &child, &child_bytes).await.0,
        StatusCode::CREATED
    );
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": child_bytes.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    let r = Client::new()
        .put(reg.url("/v2/ci/multi/manifests/multi"))
        .header(header::CONTENT_TYPE, OCI_INDEX)
        .body(index.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let lone = push(&reg, "ci/multi", "", "lone").await;
    past(3).await;

    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains(&format!("deleted manifest ci/multi@{lone}")),
        "{out}"
    );
    assert!(
        out.contains("retention: deleted 0 tags and 1 manifests"),
        "{out}"
    );
    assert!(exists(&reg, "ci/multi", &child).await, "the index keeps it");

    // Untag the index: once untagged long enough it goes, then its child.
    delete(&reg, "ci/multi", "multi").await;
    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains("deleted 0 tags and 0 manifests"),
        "untagged just now: {out}"
    );
    past(3).await;
    let out = retention(tmp.path(), &[]);
    let at_index = out.find(&format!("manifest ci/multi@{}", sha256(&index)));
    let at_child = out.find(&format!("manifest ci/multi@{child}"));
    assert!(
        at_index.is_some() && at_child.is_some() && at_index < at_child,
        "{out}"
    );
    assert!(out.contains("the index listing it goes first"), "{out}");
    assert!(!exists(&reg, "ci/multi", &child).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_pulled_within_keeps_what_was_pulled() {
    let tmp = tempfile::tempdir().unwrap();
    let config = rule("keep_pulled_within = \"1h\"");
    let mut reg = serve_with(tmp.path(), &config);
    let pulled = push(&reg, "ci/app", "pulled", "p").await;
    let headed = push(&reg, "ci/app", "headed", "h").await;
    push(&reg, "ci/app", "never", "n").await;
    // A pull by digest counts for every tag of that manifest.
    let r = Client::new()
        .get(reg.url(&format!("/v2/ci/app/manifests/{pulled}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tag(&reg, "ci/app", "pulled-too", &pulled).await;
    // A HEAD checks, it does not pull.
    assert!(exists(&reg, "ci/app", &headed).await);
    // Stopping writes the pulls noted in memory.
    assert!(reg.terminate().success());
    drop(reg);

    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains("deleted tag ci/app:headed")
            && out.contains("deleted tag ci/app:never")
            && out.contains("not pulled within 1h (no pull recorded)"),
        "{out}"
    );
    assert!(out.contains("deleted 2 tags"), "{out}");
    let reg = serve_with(tmp.path(), &config);
    assert_eq!(tags(&reg, "ci/app").await, ["pulled", "pulled-too"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_untagged_after_counts_from_the_untagging() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(tmp.path(), &rule("delete_untagged_after = \"4s\""));
    let old = push(&reg, "ci/app", "old", "old").await;
    let kept = push(&reg, "ci/app", "kept", "kept").await;
    past(4).await;
    // Pushed over 4 s ago, untagged now: not untagged for 4 s yet.
    delete(&reg, "ci/app", "old").await;
    let out = retention(tmp.path(), &[]);
    assert!(out.contains("deleted 0 tags and 0 manifests"), "{out}");
    assert!(exists(&reg, "ci/app", &old).await);
    past(4).await;
    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains(&format!("deleted manifest ci/app@{old}: untagged for ")),
        "{out}"
    );
    assert!(!exists(&reg, "ci/app", &old).await);
    // No keep rule: tags are not judged, so the tagged manifest stays.
    assert!(exists(&reg, "ci/app", &kept).await);
    assert_eq!(tags(&reg, "ci/app").await, ["kept"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(
        tmp.path(),
        &rule("keep_last = 1\ndelete_untagged_after = \"1s\""),
    );
    for n in 1..=3 {
        push(&reg, "ci/app", &format!("t{n}"), &n.to_string()).await;
    }
    let loose = push(&reg, "ci/app", "", "loose").await;
    next_second().await;
    next_second().await;
    let before = tags(&reg, "ci/app").await;
    assert_eq!(before, ["t1", "t2", "t3"]);

    let out = retention(tmp.path(), &["--dry-run"]);
    // Same second: the name breaks the tie, t3 is the one kept.
    assert!(out.contains("would delete tag ci/app:t2"), "{out}");
    assert!(out.contains("would delete tag ci/app:t1"), "{out}");
    assert!(
        out.contains(&format!("would delete manifest ci/app@{loose}")),
        "{out}"
    );
    assert!(
        out.contains("retention: would delete 2 tags and 1 manifests"),
        "{out}"
    );
    let dry = retention_json(tmp.path(), &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(tags(&reg, "ci/app").await, before);
    assert!(exists(&reg, "ci/app", &loose).await);

    // The real run does what the dry run said.
    let real = retention_json(tmp.path(), &[]);
    assert_eq!(real["dry_run"], false);
    // The same deletions (the reasons' ages may have grown a second).
    let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["kind"].clone(), d["tag"].clone(), d["digest"].clone()))
            .collect()
    };
    assert_eq!(strip(&dry), strip(&real));
    assert_eq!(strip(&real).len(), 3);
    assert_eq!(tags(&reg, "ci/app").await, ["t3"]);
    assert!(!exists(&reg, "ci/app", &loose).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn immutable_tags_are_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = serve_with(
        tmp.path(),
        &format!(
            "[[immutable]]\nrepositories = \"ci/**\"\ntags = \"v*\"\n\n{}",
            rule("keep_last = 0\ndelete_untagged_after = \"1s\"")
        ),
    );
    let release = push(&reg, "ci/app", "v1", "v1").await;
    let build = push(&reg, "ci/app", "build-1", "b1").await;
    let out = retention(tmp.path(), &[]);
    assert!(out.contains("deleted tag ci/app:build-1"), "{out}");
    assert!(!out.contains("ci/app:v1"), "{out}");
    next_second().await;
    next_second().await;
    let out = retention(tmp.path(), &[]);
    assert!(
        out.contains(&format!("deleted manifest ci/app@{build}")),
        "{out}"
    );
    assert!(!out.contains(&release), "{out}");
    assert_eq!(tags(&reg, "ci/app").await, ["v1"]);
    assert!(exists(&reg, "ci/app", &release).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_follows_a_reload_sends_events_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0, false);
    let hook = format!(
        "[[webhook]]\nurl = \"{}\"\nevents = [\"retention\"]\nbackoff = \"100ms\"\n",
        receiver.url
    );
    let reg = Registry::launch(tmp.path())
        .data()
        .args([
            "--config".as_ref(),
            tmp.path().join("registry.toml").as_os_str(),
        ])
        .log_level("info")
        .log_file();
    std::fs::write(tmp.path().join("registry.toml"), &hook).unwrap();
    let reg = reg.start();
    let old = push(&reg, "ci/app", "build-1", "1").await;
    next_second().await;
    push(&reg, "ci/app", "build-2", "2").await;

    // A rule with a schedule, added by a reload.
    std::fs::write(
        tmp.path().join("registry.toml"),
        format!("{hook}\n{}", rule("keep_last = 1\nschedule = \"1s\"")),
    )
    .unwrap();
    reg.hangup();
    reg.wait_for_log("configuration reloaded", 1);
    let got = receiver.wait_for(1);
    let event = got[0].json();
    assert_eq!(event["type"], "io.strata.registry.retention", "{event:#}");
    assert_eq!(event["subject"], "ci/app:build-1");
    assert_eq!(event["data"]["digest"], old.as_str());
    assert_eq!(event["data"]["actor"], "retention");
    assert_eq!(event["data"]["mediaType"], OCI_MANIFEST);
    assert_eq!(tags(&reg, "ci/app").await, ["build-2"]);

    let metrics = Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strata_retention_deleted_total{kind=\"tag\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_retention_deleted_total{kind=\"manifest\"} 0\n"),
        "{metrics}"
    );
}
