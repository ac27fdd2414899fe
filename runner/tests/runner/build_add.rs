//! `runner build`'s ADD beyond plain files: URLs fetched from a loopback
//! HTTP server the test runs (name, 0600, `--chmod`, Last-Modified as the
//! mtime, the size bound, a failed fetch's message); bzip2 and xz tars
//! (made with the real `bzip2` and `xz` tools) extracted.

use crate::build::{build_ok, context, fails, tar_bytes};
use crate::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A tiny HTTP/1.0 server on 127.0.0.1: `GET /…/f.txt` answers a body with
/// a Last-Modified, `/big` 4096 bytes, `/etag.txt` the current
/// [`Versioned`] body with its ETag (304 to a matching `If-None-Match`),
/// anything else 404. Stopped on drop.
struct Http {
    port: u16,
    stop: Arc<AtomicBool>,
    versioned: Arc<Versioned>,
    thread: Option<JoinHandle<()>>,
}

/// `/etag.txt`'s body (its ETag is `"v<version>"`), and how many times the
/// server sent it whole and answered 304.
#[derive(Default)]
struct Versioned {
    body: Mutex<(u32, String)>,
    sent: AtomicUsize,
    not_modified: AtomicUsize,
}

/// `Wed, 21 Oct 2015 07:28:00 GMT`.
const LAST_MODIFIED: u64 = 1_445_412_480;

impl Http {
    fn start() -> Http {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let versioned = Arc::new(Versioned::default());
        *versioned.body.lock().unwrap() = (1, "first\n".into());
        let (flag, state) = (stop.clone(), versioned.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let _ = answer(c, &state);
                }
            }
        });
        Http {
            port,
            stop,
            versioned,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn answer(mut c: TcpStream, versioned: &Versioned) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_owned();
    let mut if_none_match = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("if-none-match") {
                if_none_match = Some(value.trim().to_owned());
            }
        }
    }
    if path == "/etag.txt" {
        let (version, body) = versioned.body.lock().unwrap().clone();
        let etag = format!("\"v{version}\"");
        if if_none_match.as_deref() == Some(etag.as_str()) {
            versioned.not_modified.fetch_add(1, Ordering::SeqCst);
            return write!(
                c,
                "HTTP/1.0 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
            );
        }
        versioned.sent.fetch_add(1, Ordering::SeqCst);
        write!(
            c,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        return c.write_all(body.as_bytes());
    }
    let (status, extra, body): (&str, &str, Vec<u8>) = if path.ends_with("/f.txt") {
        (
            "200 OK",
            "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
            b"fetched\n".to_vec(),
        )
    } else if path == "/big" {
        ("200 OK", "", vec![b'x'; 4096])
    } else {
        ("404 Not Found", "", b"no\n".to_vec())
    };
    write!(
        c,
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )?;
    c.write_all(&body)
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn add_url_fetches_with_docker_modes_and_mtime() {
    let w = World::new();
    let http = Http::start();
    let df = format!(
        "FROM base\nADD {} /dl/\nADD --chmod=0644 {} /dl/g.txt\nADD {} /dl/\n",
        http.url("/dir/f.txt?x=1"),
        http.url("/f.txt"),
        http.url("/big"),
    );
    let dir = context(&w, "addurl", &df, &[]);
    build_ok(&w, &dir, &["-t", "local/addurl"]);
    let out = w.ok(&[
        "run",
        "local/addurl",
        "sh",
        "-c",
        "cat /dl/f.txt /dl/g.txt; stat -c '%n %a %u:%g %Y %s' /dl/f.txt /dl/g.txt /dl/big",
    ]);
    let big = out.lines().last().unwrap().to_owned();
    assert_eq!(
        out.lines().take(4).collect::<Vec<_>>(),
        [
            "fetched",
            "fetched",
            &format!("/dl/f.txt 600 0:0 {LAST_MODIFIED} 8"),
            &format!("/dl/g.txt 644 0:0 {LAST_MODIFIED} 8"),
        ],
        "{out}"
    );
    assert!(
        big.starts_with("/dl/big 600 0:0 ") && big.ends_with(" 4096"),
        "{out}"
    );
}

/// A URL fetched before is revalidated with its ETag: unchanged, the step
/// is cached and no body is sent; a step that misses the cache fetches the
/// body again; a new version re-runs the step. `--checksum` is checked.
#[test]
fn add_url_is_revalidated_and_checksummed() {
    let w = World::new();
    let http = Http::start();
    let url = http.url("/etag.txt");
    let df = |n: &str| format!("FROM base\nRUN echo {n} > /n\nADD {url} /e.txt\n");
    let dir = context(&w, "etag", &df("1"), &[]);
    let t = ["-t", "local/etag"];
    let v = &http.versioned;
    let counts = || {
        (
            v.sent.load(Ordering::SeqCst),
            v.not_modified.load(Ordering::SeqCst),
        )
    };
    build_ok(&w, &dir, &t);
    assert_eq!(counts(), (1, 0));
    // Unchanged: a 304, no body, the step cached.
    let log = build_ok(&w, &dir, &t);
    assert_eq!(counts(), (1, 1));
    let lines: Vec<&str> = log.lines().collect();
    let add = lines.iter().position(|l| l.contains("] ADD ")).unwrap();
    assert!(lines[add + 1].ends_with(" CACHED"), "{log}");
    // The step before changed, so the ADD misses: the body is fetched again.
    std::fs::write(
        dir.join("Dockerfile"),
        df("2").replace("FROM base", &format!("FROM {}", w.image("busybox"))),
    )
    .unwrap();
    build_ok(&w, &dir, &t);
    assert_eq!(counts(), (2, 2));
    assert_eq!(w.ok(&["run", "local/etag", "cat", "/e.txt"]), "first\n");
    // A new version: fetched, and the image has it.
    *v.body.lock().unwrap() = (2, "second\n".into());
    build_ok(&w, &dir, &t);
    assert_eq!(counts(), (3, 2));
    assert_eq!(w.ok(&["run", "local/etag", "cat", "/e.txt"]), "second\n");
    // --checksum: the right digest builds, a wrong one names both.
    let good = sha256(b"second\n");
    let dir = context(
        &w,
        "sum",
        &format!("FROM base\nADD --checksum={good} {url} /s.txt\n"),
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/sum"]);
    let bad = sha256(b"other");
    fails(
        &w,
        "badsum",
        &format!("FROM base\nADD --checksum={bad} {url} /s.txt\n"),
        &[],
        &[
            "Dockerfile:2: ADD",
            &format!("--checksum={bad} does not match"),
            &good,
        ],
    );
    fails(
        &w,
        "localsum",
        &format!("FROM base\nADD --checksum={good} Dockerfile /d\n"),
        &[],
        &[
            "Dockerfile:2: ADD",
            "--checksum is only for ADD of an http(s) URL",
        ],
    );
}

#[test]
fn add_url_failures_name_the_line() {
    let w = World::new();
    let http = Http::start();
    fails(
        &w,
        "url404",
        &format!("FROM base\nRUN true\nADD {} /x\n", http.url("/nothere")),
        &[],
        &["Dockerfile:3: ADD", "404 Not Found"],
    );
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    fails(
        &w,
        "urlrefused",
        &format!("FROM base\nADD http://127.0.0.1:{closed}/f.txt /x\n"),
        &[],
        &["Dockerfile:2: ADD", "failed to fetch"],
    );
    // Over the bound: refused, nothing tagged.
    let dir = context(
        &w,
        "urlbig",
        &format!("FROM base\nADD {} /x\n", http.url("/big")),
        &[],
    );
    let out = w
        .cmd(&["build", "-t", "local/urlbig", dir.to_str().unwrap()])
        .env("STRATA_BUILD_ADD_MAX_BYTES", "1000")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Dockerfile:2: ADD") && err.contains("larger than the limit of 1000 bytes"),
        "{err}"
    );
}

/// `data` through `tool -c` (bzip2, xz).
fn compressed(tool: &str, data: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut c = Command::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

#[test]
fn add_extracts_bzip2_and_xz_tars() {
    let w = World::new();
    let dir = context(
        &w,
        "addbzxz",
        "FROM base\nADD a.tar.bz2 /bz/\nADD b.tar.xz /xz/\nADD --unpack=false b.tar.xz /raw/\nADD notatar.xz /nt/\n",
        &[],
    );
    let bz = compressed("bzip2", &tar_bytes(&[("d/x.txt", b"bz\n", 0o640, 5)]));
    std::fs::write(dir.join("a.tar.bz2"), bz).unwrap();
    let xz = compressed("xz", &tar_bytes(&[("y.txt", b"xz\n", 0o600, 7)]));
    std::fs::write(dir.join("b.tar.xz"), xz).unwrap();
    // xz data that is not a tar: copied as the file it is.
    std::fs::write(dir.join("notatar.xz"), compressed("xz", b"just text\n")).unwrap();
    build_ok(&w, &dir, &["-t", "local/addbzxz"]);
    let out = w.ok(&[
        "run",
        "local/addbzxz",
        "sh",
        "-c",
        "cat /bz/d/x.txt /xz/y.txt; stat -c '%n %a %u:%g' /bz/d/x.txt /xz/y.txt; ls /raw; ls /nt",
    ]);
    assert_eq!(
        out,
        "bz\nxz\n/bz/d/x.txt 640 5:5\n/xz/y.txt 600 7:7\nb.tar.xz\nnotatar.xz\n"
    );
}
