//! Operations against the real binary: online GC, fsck, staging cleanup, health and metrics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{header, Client, StatusCode};
use serde_json::json;

use crate::harness::{push_blob, sha256, Registry, OCI_MANIFEST};

/// A registry with the config in `dir`.
fn serve(dir: &Path) -> Registry {
    serve_logging(dir, "warn", Stdio::inherit())
}

/// Like [`serve`], logging at `level` to `stderr`.
fn serve_logging(dir: &Path, level: &str, stderr: Stdio) -> Registry {
    Registry::launch(dir)
        .args(["--config"])
        .args([dir.join("strata.toml")])
        .log_level(level)
        .stderr(stderr)
        .start()
}

/// A temp dir with a config: data inside it, the given `[gc]` settings.
fn setup(gc: &str) -> (tempfile::TempDir, PathBuf) {
    setup_config("", gc, "")
}

/// Like [`setup`], with `top` before the tables and `tail` after them.
fn setup_config(top: &str, gc: &str, tail: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("strata.toml"),
        format!("{top}\ndata = \"{}\"\n[gc]\n{gc}\n{tail}\n", data.display()),
    )
    .unwrap();
    (dir, data)
}

fn registry_cmd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(args)
        .arg("--config")
        .arg(dir.join("strata.toml"))
        .env("STRATA_LOG", "warn")
        .output()
        .unwrap()
}

fn blob_file(data: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data.join(format!("storage/blobs/sha256/{}/{hex}", &hex[..2]))
}

/// Push an image with a unique config and layer; returns the manifest digest.
async fn push_image(reg: &Registry, repo: &str, tag: &str, seed: &str) -> String {
    let config = format!(r#"{{"seed":"{seed}"}}"#);
    let layer = format!("layer {seed} {}", "x".repeat(1000));
    let cd = push_blob(reg, repo, config.as_bytes()).await;
    let ld = push_blob(reg, repo, layer.as_bytes()).await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]});
    let bytes = serde_json::to_vec(&m).unwrap();
    let r = Client::new()
        .put(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header(header::CONTENT_TYPE, OCI_MANIFEST)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push {repo}:{tag}");
    sha256(&bytes)
}

/// Pull an image by tag and check every digest.
async fn verify_image(reg: &Registry, repo: &str, tag: &str, digest: &str) {
    let r = Client::new()
        .get(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), digest);
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.extend(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    for d in blobs {
        let r = Client::new()
            .get(reg.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{repo} blob {d}");
        assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_dry_run_then_sweep_keeps_referenced_content() {
    let (dir, data) = setup("grace_secs = 0");
    let reg = serve(dir.path());
    let image = push_image(&reg, "app", "v1", "kept").await;
    let loose = push_blob(&reg, "app", b"pushed but never referenced").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let out = registry_cmd(dir.path(), &["gc", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("would delete blob {loose}")),
        "{text}"
    );
    assert!(text.contains("would free 27 bytes in 1 blobs"), "{text}");
    assert!(blob_file(&data, &loose).exists(), "dry run deletes nothing");

    let out = registry_cmd(dir.path(), &["gc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("freed 27 bytes in 1 blobs"), "{text}");
    assert!(!blob_file(&data, &loose).exists());
    let r = Client::new()
        .head(reg.url(&format!("/v2/app/blobs/{loose}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    verify_image(&reg, "app", "v1", &image).await;
    // Once the manifest is gone, its blobs go too.
    Client::new()
        .delete(reg.url(&format!("/v2/app/manifests/{image}")))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = registry_cmd(dir.path(), &["gc"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("in 3 blobs"),
        "config, layer and manifest"
    );
    assert!(
        std::fs::read_dir(data.join("storage/blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn online_gc_in_a_loop_while_sixteen_clients_push_and_pull() {
    let (dir, data) = setup("interval_secs = 1\ngrace_secs = 3");
    let reg = std::sync::Arc::new(serve(dir.path()));
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for client in 0..16 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let mut pushed = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let repo = format!("load/c{client}");
                let tag = format!("t{i}");
                let digest = push_image(&reg, &repo, &tag, &format!("{client}-{i}")).await;
                verify_image(&reg, &repo, &tag, &digest).await;
                pushed.push((repo, tag, digest));
                i += 1;
            }
            pushed
        }));
    }
    let mut images = Vec::new();
    for t in tasks {
        images.extend(t.await.unwrap());
    }
    assert!(images.len() >= 16);
    let garbage: Vec<String> = futures::future::join_all((0..5).map(|i| {
        let reg = reg.clone();
        async move { push_blob(&reg, "load/garbage", format!("garbage {i}").as_bytes()).await }
    }))
    .await;
    // Past the grace period and a few GC ticks, garbage is gone and every image is intact.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for d in &garbage {
        assert!(!blob_file(&data, d).exists(), "garbage {d} swept");
    }
    for (repo, tag, digest) in &images {
        verify_image(&reg, repo, tag, digest).await;
    }
    let metrics = Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let runs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_gc_runs_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(runs >= 5, "gc ran {runs} times");
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_finds_corruption_and_repair_quarantines_it() {
    let (dir, data) = setup("");
    let reg = serve(dir.path());
    let image = push_image(&reg, "fs", "v1", "fsck").await;
    let victim = push_blob(&reg, "fs", b"a blob that will rot on disk").await;
    drop(reg);
    let out = registry_cmd(dir.path(), &["fsck"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(blob_file(&data, &victim), b"a blob that will r0t on disk").unwrap();
    let out = registry_cmd(dir.path(), &["fsck"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("corrupt: {victim}")), "{text}");
    let out = registry_cmd(dir.path(), &["fsck", "--repair"]);
    assert_eq!(out.status.code(), Some(1));
    let hex = victim.strip_prefix("sha256:").unwrap();
    assert!(data
        .join(format!("storage/quarantine/sha256/{hex}"))
        .exists());
    let out = registry_cmd(dir.path(), &["fsck"]);
    assert!(
        out.status.success(),
        "clean after repair: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Bytes nobody knows about are reported too.
    let stray = sha256(b"stray");
    let path = blob_file(&data, &stray);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"stray").unwrap();
    let out = registry_cmd(dir.path(), &["fsck"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("orphan: {stray}")));
    let reg = serve(dir.path());
    verify_image(&reg, "fs", "v1", &image).await;
}

/// A corrupt layer is listed with the manifest that references it, with
/// and without `--repair` (the docs promise both).
#[tokio::test(flavor = "multi_thread")]
async fn fsck_names_the_manifests_a_corrupt_layer_breaks_with_and_without_repair() {
    let (dir, data) = setup("");
    let reg = serve(dir.path());
    let image = push_image(&reg, "broken/app", "v1", "rot").await;
    let m: serde_json::Value = Client::new()
        .get(reg.url(&format!("/v2/broken/app/manifests/{image}")))
        .header(header::ACCEPT, OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    drop(reg);
    std::fs::write(blob_file(&data, &layer), b"rotten").unwrap();
    for args in [&["fsck"][..], &["fsck", "--repair"]] {
        let out = registry_cmd(dir.path(), args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains(&format!("corrupt: {layer}")),
            "{args:?}: {text}"
        );
        assert!(
            text.contains(&format!("  affects manifest broken/app@{image}")),
            "{args:?}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_clears_staging_debris_and_health_endpoints_answer() {
    let (dir, data) = setup("");
    let reg = serve(dir.path());
    let r = Client::new()
        .post(reg.url("/v2/x/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let live = r.headers()["location"].to_str().unwrap().to_owned();
    Client::new()
        .patch(reg.url(&live))
        .body("kept")
        .send()
        .await
        .unwrap();
    drop(reg);
    let debris = data.join("storage/uploads/0b5d4a9e-5e7f-4f0a-9d55-3c2b1a0f9e8d/part-x");
    std::fs::create_dir_all(debris.parent().unwrap()).unwrap();
    std::fs::write(&debris, b"left by a crash").unwrap();
    let reg = serve(dir.path());
    assert!(!debris.exists(), "debris removed at start-up");
    let r = Client::new().get(reg.url(&live)).send().await.unwrap();
    assert_eq!(
        r.headers()["range"],
        "0-3",
        "a live session keeps its bytes"
    );
    for (path, status) in [("/livez", 200), ("/readyz", 200), ("/metrics", 200)] {
        let r = Client::new().get(reg.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
    let metrics = Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strata_requests_total{route=\"upload\",status=\"204\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("strata_storage_bytes 0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_clients_get_429_with_retry_after_and_logs_can_be_json() {
    let (dir, _data) = setup_config(
        "log_format = \"json\"",
        "",
        "[limits]\nrate_per_second = 1\nburst = 5",
    );
    let log = dir.path().join("log");
    let mut reg = serve_logging(
        dir.path(),
        "info",
        std::fs::File::create(&log).unwrap().into(),
    );
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = Client::new().get(reg.url("/v2/")).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()[header::RETRY_AFTER], "1");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["errors"][0]["code"], "TOOMANYREQUESTS");
        }
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    assert!(reg.terminate().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    let request_line = logged
        .lines()
        .find(|l| l.contains("\"path\":\"/v2/\""))
        .expect("a JSON request line");
    let v: serde_json::Value = serde_json::from_str(request_line).unwrap();
    assert_eq!(v["fields"]["method"], "GET");
    assert!(v["fields"]["status"].is_number());
}

/// `registry gc` in another process sweeps blobs while clients push them again and
/// reference them: every acknowledged push must stay readable, and fsck stays clean.
#[tokio::test(flavor = "multi_thread")]
async fn gc_in_another_process_never_loses_acknowledged_pushes() {
    let (dir, _data) = setup("grace_secs = 1");
    let reg = std::sync::Arc::new(serve(dir.path()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_dir = dir.path().to_path_buf();
    let gc_stop = stop.clone();
    let gc = std::thread::spawn(move || {
        let mut runs = 0;
        while !gc_stop.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(registry_cmd(&gc_dir, &["gc"]).status.success());
            runs += 1;
        }
        runs
    });
    let mut tasks = Vec::new();
    for client in 0..4 {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            let repo = format!("race/c{client}");
            let mut images = Vec::new();
            for round in 0..4 {
                // The image's blobs, pushed loose and left idle past the grace
                // period so GC sweeps them, then pushed again with the manifest.
                let seed = format!("{client}-{round}");
                push_blob(&reg, &repo, format!(r#"{{"seed":"{seed}"}}"#).as_bytes()).await;
                push_blob(
                    &reg,
                    &repo,
                    format!("layer {seed} {}", "x".repeat(1000)).as_bytes(),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(2100 + 150 * client)).await;
                let tag = format!("t{round}");
                images.push((
                    repo.clone(),
                    tag.clone(),
                    push_image(&reg, &repo, &tag, &seed).await,
                ));
            }
            images
        }));
    }
    let mut images = Vec::new();
    for t in tasks {
        images.extend(t.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(gc.join().unwrap() >= 2, "gc ran while clients pushed");
    for (repo, tag, digest) in &images {
        verify_image(&reg, repo, tag, digest).await;
    }
    let out = registry_cmd(dir.path(), &["fsck"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Read what the server sends until it closes the connection; `None` when
/// it is still open after 10 s.
fn read_until_closed(mut conn: std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Slowloris: clients that stall in their headers or inside a body are cut
/// off after the configured timeouts, a stalled body gets 408 and appends
/// nothing, and while fifty of them hang the registry still answers others
/// (a second writer on a busy upload gets 416 at once).
#[tokio::test(flavor = "multi_thread")]
async fn stalled_headers_and_bodies_time_out_without_starving_others() {
    use std::io::Write;
    let (dir, _data) = setup_config(
        "",
        "",
        "[limits]\nheader_timeout_secs = 1\nbody_idle_timeout_secs = 2",
    );
    let reg = serve(dir.path());
    let addr = reg.base.strip_prefix("http://").unwrap().to_owned();
    let client = Client::new();

    let mut locations = Vec::new();
    for _ in 0..50 {
        let r = client
            .post(reg.url("/v2/slow/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        locations.push(r.headers()[header::LOCATION].to_str().unwrap().to_owned());
    }
    let status = |client: Client, location: String| {
        let url = reg.url(&location);
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            r.headers().get(header::RANGE).cloned()
        }
    };
    let before = status(client.clone(), locations[0].clone()).await;

    let stalled_body = |location: &str| {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 1000\r\n\r\n0123456789"
        )
        .unwrap();
        conn
    };
    let hung: Vec<_> = locations.iter().map(|l| stalled_body(l)).collect();
    let mut slow_header = std::net::TcpStream::connect(&addr).unwrap();
    write!(slow_header, "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n").unwrap();

    // A second writer on an upload that is being written is refused at once
    // (once the stalled writers are inside their handlers).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client.get(reg.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        if text.contains("strata_uploads_in_flight 50") || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .patch(reg.url(&locations[0]))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Others are served while those hang.
    let r = client.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let answer = tokio::task::spawn_blocking(move || read_until_closed(slow_header))
        .await
        .unwrap()
        .expect("a stalled header is cut off");
    assert!(!answer.contains("200 OK"), "{answer}");

    let answers = tokio::task::spawn_blocking(move || {
        hung.into_iter().map(read_until_closed).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for answer in answers {
        let answer = answer.expect("a stalled body is cut off");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    }
    assert_eq!(
        status(client.clone(), locations[0].clone()).await,
        before,
        "a stalled PATCH appended bytes"
    );
}
