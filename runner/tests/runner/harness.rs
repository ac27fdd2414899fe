//! The shared harness: a registry process per test, test layers and images
//! built in memory and pushed over HTTP, and a `World` (registry + state root)
//! that runs the real `runner` binary.

use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "/bin/busybox";

pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "hostname", "sleep", "dd", "touch", "mkdir", "rm", "unshare",
    "mount", "kill", "grep", "wc", "seq", "head", "true", "false", "env", "pwd", "test", "printf",
    "stat", "mknod",
];

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A registry process started for one test; killed (by pid) on drop.
pub struct Registry {
    pub child: Child,
    pub addr: String,
    pub _data: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::launch(tempfile::tempdir().unwrap(), &[])
    }

    /// Stops this registry and starts another (on a new port) serving the
    /// same data with `args` added, e.g. `--htpasswd FILE` or the TLS flags:
    /// images are pushed in plain HTTP without auth first.
    pub fn restart_with(mut self, args: &[&std::ffi::OsStr]) -> Registry {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self._data, tempfile::tempdir().unwrap());
        Registry::launch(data, args)
    }

    fn launch(data: tempfile::TempDir, args: &[&std::ffi::OsStr]) -> Registry {
        let bin = std::env::var("STRATA_REGISTRY_BIN").expect(
            "STRATA_REGISTRY_BIN must point at the registry binary (`registry serve --listen ADDR --data DIR`)",
        );
        assert!(
            Path::new(&bin).is_file(),
            "STRATA_REGISTRY_BIN={bin} does not exist"
        );
        let base = 20000 + (std::process::id() % 20000) as u16;
        for attempt in 0..20u16 {
            let seq = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = base.wrapping_add(seq * 7 + attempt * 131) % 40000 + 20000;
            let addr = format!("127.0.0.1:{port}");
            let mut child = Command::new(&bin)
                .args(["serve", "--listen", &addr, "--data"])
                .arg(data.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // port taken or startup failure: try another port
                }
                if answers(&addr) {
                    return Registry {
                        child,
                        addr,
                        _data: data,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("registry did not start");
    }
}

/// Whether a server at `addr` answers a plain HTTP request with anything: an
/// HTTP registry answers it, a TLS one answers with an alert or a 400.
fn answers(addr: &str) -> bool {
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut byte = [0u8; 1];
    conn.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok() && matches!(conn.read(&mut byte), Ok(1))
}

pub static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
}

/// One tar entry of a test layer. Names are raw bytes so malicious ones can be written.
pub enum Entry {
    Dir(&'static str),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    Hardlink(String, String),
}

pub struct Layer {
    pub blob: Vec<u8>,
    pub diff_id: String,
    pub media_type: &'static str,
}

pub fn header(kind: tar::EntryType, name: &str, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    let raw = &mut h.as_old_mut().name;
    raw.fill(0);
    raw[..name.len()].copy_from_slice(name.as_bytes());
    h
}

pub fn set_link(h: &mut tar::Header, target: &str) {
    let raw = &mut h.as_old_mut().linkname;
    raw.fill(0);
    raw[..target.len()].copy_from_slice(target.as_bytes());
}

pub fn layer(compression: Compression, entries: &[Entry]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (tar::Header, &[u8]) = match e {
            Entry::Dir(n) => (header(tar::EntryType::Directory, n, 0, 0o755), &[]),
            Entry::File(n, d, m) => (header(tar::EntryType::Regular, n, d.len() as u64, *m), d),
            Entry::Symlink(n, t) => {
                let mut h = header(tar::EntryType::Symlink, n, 0, 0o777);
                set_link(&mut h, t);
                (h, &[])
            }
            Entry::Hardlink(n, t) => {
                let mut h = header(tar::EntryType::Link, n, 0, 0o644);
                set_link(&mut h, t);
                (h, &[])
            }
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let diff_id = sha256(&tar);
    let (blob, media_type) = match compression {
        Compression::Plain => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&tar).unwrap();
            (
                enc.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::encode_all(&tar[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    Layer {
        blob,
        diff_id,
        media_type,
    }
}

pub fn file(name: &str, data: &[u8]) -> Entry {
    Entry::File(name.to_owned(), data.to_vec(), 0o644)
}

/// A busybox root filesystem with an `app` user, and optionally extra files.
pub fn busybox_layer(compression: Compression, extra: Vec<Entry>) -> Layer {
    let busybox = fs::read(BUSYBOX).expect("busybox-static must be installed (/bin/busybox)");
    let mut entries = vec![
        Entry::Dir("bin/"),
        Entry::Dir("etc/"),
        Entry::Dir("tmp/"),
        Entry::Dir("root/"),
        Entry::Dir("home/"),
        Entry::Dir("home/app/"),
        Entry::File("bin/busybox".into(), busybox, 0o755),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        file("etc/group", b"root:x:0:\napp:x:1000:\nwheel:x:10:app\nnogroup:x:65534:\n"),
    ];
    for a in APPLETS {
        entries.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
    }
    entries.extend(extra);
    layer(compression, &entries)
}

pub fn sysprobe() -> Vec<u8> {
    static_probe("sysprobe")
}

/// Compiles `tests/runner/<name>.c` into a static binary and returns it.
pub fn static_probe(name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/runner/{name}.c"));
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc (with static glibc, Debian's gcc + libc6-dev) is needed");
    assert!(status.success(), "compiling {name} failed");
    fs::read(out).unwrap()
}

pub fn put_blob(reg: &Registry, repo: &str, blob: &[u8]) -> String {
    let digest = sha256(blob);
    let start = ureq::post(&format!(
        "http://{}/v2/{repo}/blobs/uploads/?digest={digest}",
        reg.addr
    ))
    .set("Content-Type", "application/octet-stream")
    .send_bytes(blob)
    .expect("start upload");
    if start.status() == 201 {
        return digest;
    }
    let location = start
        .header("Location")
        .expect("upload location")
        .to_owned();
    let url = if location.starts_with('/') {
        format!("http://{}{location}", reg.addr)
    } else {
        location
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = ureq::put(&format!("{url}{sep}digest={digest}"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(blob)
        .expect("finish upload");
    assert_eq!(resp.status(), 201);
    digest
}

pub fn put_manifest(
    reg: &Registry,
    repo: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let resp = ureq::put(&format!("http://{}/v2/{repo}/manifests/{tag}", reg.addr))
        .set("Content-Type", media_type)
        .send_bytes(body)
        .expect("put manifest");
    assert_eq!(resp.status(), 201);
    sha256(body)
}

/// An image's config (given `rootfs` for `layers`; linux/amd64 unless it
/// names its own architecture) and its OCI image manifest, as bytes.
pub fn image_documents(layers: &[&Layer], config: serde_json::Value) -> (Vec<u8>, Vec<u8>) {
    let mut config = config;
    if config["architecture"].is_null() {
        config["architecture"] = "amd64".into();
    }
    config["os"] = "linux".into();
    config["rootfs"] = serde_json::json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": l.media_type, "digest": sha256(&l.blob), "size": l.blob.len()}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config_bytes), "size": config_bytes.len()},
        "layers": descs,
    });
    (config_bytes, serde_json::to_vec(&manifest).unwrap())
}

/// Pushes an image and returns the manifest bytes' digest.
pub fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[&Layer],
    config: serde_json::Value,
) -> String {
    let (config_bytes, manifest) = image_documents(layers, config);
    put_blob(reg, repo, &config_bytes);
    for l in layers {
        put_blob(reg, repo, &l.blob);
    }
    put_manifest(
        reg,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
}

pub fn default_config() -> serde_json::Value {
    serde_json::json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}})
}

/// One test's world: a registry, a runner state root and a temp dir.
pub struct World {
    pub reg: Registry,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        World {
            reg: Registry::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}:latest", self.reg.addr)
    }

    pub fn push_busybox(&self, repo: &str, extra: Vec<Entry>) -> String {
        let l = busybox_layer(Compression::Gzip, extra);
        push_image(&self.reg, repo, "latest", &[&l], default_config());
        self.image(repo)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.arg("--root").arg(self.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn runner(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run runner")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.runner(args);
        assert!(
            out.status.success(),
            "runner {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        let dir = self.root().join("layers/sha256");
        let mut v: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Spawns a container whose command prints "ready" first, and waits for that line.
pub fn started(mut cmd: Command) -> Child {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    child
}

/// Runs the runner and fails, instead of hanging the suite, if it outlives `limit`.
pub fn runner_within(w: &World, args: &[&str], limit: Duration) -> Output {
    let mut child = w
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runner {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs the OCI bundle at `bundle` with runc as container `name` (state
/// under the test's dir), asserts it succeeded and returns its output. The
/// container is deleted afterwards, even if the test fails midway.
pub fn runc_run(w: &World, bundle: &Path, name: &str) -> Output {
    struct RuncGuard(PathBuf, String);
    impl Drop for RuncGuard {
        fn drop(&mut self) {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.0)
                .args(["delete", "--force", &self.1])
                .output();
        }
    }
    let runc_root = w.dir.path().join("runc");
    let _cleanup = RuncGuard(runc_root.clone(), name.to_owned());
    let out = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .expect("runc must be installed (Debian package runc)");
    assert!(out.status.success(), "runc failed: {}", stderr(&out));
    out
}
