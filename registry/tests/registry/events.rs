//! Webhook events: a receiver in the test (a small HTTP server on loopback)
//! that fails its first deliveries still gets every event, in order per
//! repository, signed; an event whose delivery a `kill -9` cut short is
//! delivered after the restart; an event that always fails goes dead, is
//! listed by `registry events dead` and delivered after `registry events retry`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::Registry;
use crate::policy::{image, put, serve_with};

/// One delivery as received.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    /// Answer this many requests with 500 first.
    fail_first: usize,
    failed: usize,
    /// Read requests but never answer them (the connections are kept).
    hold: bool,
    held: Vec<TcpStream>,
    got: Vec<Delivery>,
}

/// A webhook receiver on `127.0.0.1`, one connection at a time.
pub(crate) struct Receiver {
    pub(crate) url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub(crate) fn start(fail_first: usize, hold: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            fail_first,
            hold,
            ..State::default()
        }));
        let shared = state.clone();
        // The thread ends with the test process; it holds no child process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &shared);
            }
        });
        Receiver { url, state }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().got.clone()
    }

    fn held(&self) -> usize {
        self.state.lock().unwrap().held.len()
    }

    fn release(&self) {
        let mut s = self.state.lock().unwrap();
        s.hold = false;
        s.held.clear();
    }

    /// Answer every request from now on with success.
    fn heal(&self) {
        let mut s = self.state.lock().unwrap();
        s.fail_first = s.failed;
    }

    /// Wait (a minute at most) until `n` distinct events arrived.
    pub(crate) fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = distinct(self.deliveries());
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events within a minute: {got:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut s = state.lock().unwrap();
    if s.hold {
        s.held.push(stream);
        return Ok(());
    }
    let status = if s.failed < s.fail_first {
        s.failed += 1;
        "500 Internal Server Error"
    } else {
        s.got.push(Delivery { headers, body });
        "204 No Content"
    };
    drop(s);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Deliveries with duplicates (same event id) dropped, first arrival kept.
fn distinct(all: Vec<Delivery>) -> Vec<Delivery> {
    let mut seen = std::collections::HashSet::new();
    all.into_iter()
        .filter(|d| seen.insert(d.json()["id"].as_str().unwrap().to_owned()))
        .collect()
}

fn verify_signature(d: &Delivery, secret: &[u8]) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(&d.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(d.header("x-strata-signature-256"), Some(expected.as_str()));
    assert!(d
        .header("content-type")
        .unwrap()
        .starts_with("application/cloudevents+json"));
    assert_eq!(d.header("x-strata-event-id"), d.json()["id"].as_str());
}

fn webhook(name: &str, url: &str, secret: &Path, extra: &str) -> String {
    format!(
        "[[webhook]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret_file = \"{}\"\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\n{extra}\n",
        secret.display()
    )
}

pub(crate) async fn metrics(reg: &Registry) -> String {
    Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_arrives_in_order_and_signed_despite_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let secret = dir.join("hook.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let good = Receiver::start(3, false);
    let broken = Receiver::start(usize::MAX, false);
    let config = webhook(
        "good",
        &good.url,
        &secret,
        "events = [\"push\", \"delete\", \"mount\"]",
    ) + &webhook(
        "broken",
        &broken.url,
        &secret,
        "max_attempts = 2\nrepositories = \"app\"\nevents = [\"delete\"]",
    );
    let reg = serve_with(dir, &config);
    let mut manifests = Vec::new();
    for i in 0..4 {
        let m = image(&reg, "app", None, &i.to_string()).await;
        assert_eq!(
            put(&reg, None, "app", &format!("t{i}"), &m).await.0,
            StatusCode::CREATED
        );
        manifests.push(m);
    }
    let r = Client::new()
        .delete(reg.url("/v2/app/manifests/t0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let layer = crate::harness::sha256(b"layer-1");
    let r = Client::new()
        .post(reg.url(&format!("/v2/other/blobs/uploads/?mount={layer}&from=app")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let got = good.wait_for(6);
    for d in &got {
        verify_signature(d, b"s3cret");
    }
    let app: Vec<(String, String)> = got
        .iter()
        .map(Delivery::json)
        .filter(|e| e["data"]["repository"] == "app")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let push = |t: &str| ("io.strata.registry.push".to_owned(), format!("app:{t}"));
    assert_eq!(
        app,
        [
            push("t0"),
            push("t1"),
            push("t2"),
            push("t3"),
            ("io.strata.registry.delete".to_owned(), "app:t0".to_owned())
        ]
    );
    // Order holds per repository only: while app's first event is retried,
    // other's mount may arrive first.
    let first = got
        .iter()
        .map(Delivery::json)
        .find(|e| e["data"]["repository"] == "app")
        .unwrap();
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(
        first["data"]["digest"],
        crate::harness::sha256(&manifests[0])
    );
    assert_eq!(first["data"]["clientAddress"], "127.0.0.1");
    let mount = got
        .iter()
        .map(Delivery::json)
        .find(|e| e["type"] == "io.strata.registry.mount")
        .unwrap();
    assert_eq!(
        (&mount["data"]["repository"], &mount["data"]["from"]),
        (&Value::from("other"), &Value::from("app"))
    );

    // The broken webhook's one event goes dead after its two tries.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics(&reg).await;
        if m.contains("strata_outbox_events{state=\"dead\"} 1") {
            assert!(
                m.contains("strata_webhook_deliveries_total{result=\"dead\"} 1"),
                "{m}"
            );
            assert!(
                m.contains("strata_webhook_deliveries_total{result=\"delivered\"} 6"),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dead event within a minute:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(broken.deliveries().is_empty());

    // The dead-letter list names it; once the receiver works, a retry
    // delivers it.
    let dead = registry_events(dir, &["dead", "--json"]);
    let dead: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (
            &dead[0]["webhook"],
            &dead[0]["repository"],
            &dead[0]["attempts"]
        ),
        (&Value::from("broken"), &Value::from("app"), &Value::from(2))
    );
    assert_eq!(dead[0]["event"]["type"], "io.strata.registry.delete");
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("500"),
        "{dead:?}"
    );
    broken.heal();
    let seq = dead[0]["seq"].to_string();
    assert!(registry_events(dir, &["retry", &seq]).contains("1 dead event(s) queued again"));
    let redelivered = broken.wait_for(1);
    assert_eq!(redelivered[0].json()["id"], dead[0]["id"]);
    assert_eq!(registry_events(dir, &["dead", "--json"]), "");
}

/// `registry events ARGS` with the configuration in `dir`; its stdout.
fn registry_events(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry"))
        .arg("events")
        .arg("--config")
        .arg(dir.join("registry.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "registry events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Removes a directory on drop.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn event_cut_short_by_kill_9_arrives_after_the_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = RemoveDir(tmp.keep());
    let secret = dir.0.join("hook.secret");
    std::fs::write(&secret, "k").unwrap();
    // It reads the first delivery and never answers: the registry is killed mid-delivery.
    let receiver = Receiver::start(0, true);
    let config = webhook("hook", &receiver.url, &secret, "timeout = \"2s\"");
    let reg = serve_with(&dir.0, &config);
    let m = image(&reg, "app", None, "k").await;
    assert_eq!(
        put(&reg, None, "app", "v1", &m).await.0,
        StatusCode::CREATED
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.held() == 0 {
        assert!(
            Instant::now() < deadline,
            "no delivery started within a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reg.kill();
    receiver.release();
    assert!(receiver.deliveries().is_empty());

    let reg = serve_with(&dir.0, &config);
    let got = receiver.wait_for(1);
    verify_signature(&got[0], b"k");
    let e = got[0].json();
    assert_eq!(
        (e["type"].as_str(), e["subject"].as_str()),
        (Some("io.strata.registry.push"), Some("app:v1"))
    );
    assert_eq!(e["data"]["digest"], crate::harness::sha256(&m));
    drop(reg);
}
