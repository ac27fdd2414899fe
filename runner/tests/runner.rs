//! End-to-end tests of the `runner` binary against a real registry and the
//! real kernel. They need root, the registry binary (STRATA_REGISTRY_BIN),
//! Debian's busybox-static, gcc with static glibc, and runc for the bundle test.
//!
//! Each test gets its own temp dir, its own registry process and its own
//! runner state root. Registries are stopped, and any leftover cgroup removed,
//! by Drop guards, so a failing test cleans up too.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "hostname", "sleep", "dd", "touch", "mkdir", "rm", "unshare",
    "mount", "kill", "grep", "wc", "seq", "head", "true", "false", "env", "pwd", "test", "printf",
    "stat", "mknod",
];

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A registry process started for one test; killed (by pid) on drop.
struct Registry {
    child: Child,
    addr: String,
    _data: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let bin = std::env::var("STRATA_REGISTRY_BIN").expect(
            "STRATA_REGISTRY_BIN must point at the registry binary (`registry serve --listen ADDR --data DIR`)",
        );
        assert!(
            Path::new(&bin).is_file(),
            "STRATA_REGISTRY_BIN={bin} does not exist"
        );
        let base = 20000 + (std::process::id() % 20000) as u16;
        for attempt in 0..20u16 {
            let data = tempfile::tempdir().unwrap();
            let seq = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = base.wrapping_add(seq * 7 + attempt * 131) % 40000 + 20000;
            let addr = format!("127.0.0.1:{port}");
            let mut child = Command::new(&bin)
                .args(["serve", "--listen", &addr, "--data"])
                .arg(data.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // port taken or startup failure: try another port
                }
                if ureq::get(&format!("http://{addr}/v2/")).call().is_ok()
                    || matches!(
                        ureq::get(&format!("http://{addr}/v2/")).call(),
                        Err(ureq::Error::Status(..))
                    )
                {
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

static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Compression {
    Plain,
    Gzip,
    Zstd,
}

/// One tar entry of a test layer. Names are raw bytes so malicious ones can be written.
enum Entry {
    Dir(&'static str),
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    Hardlink(String, String),
}

struct Layer {
    blob: Vec<u8>,
    diff_id: String,
    media_type: &'static str,
}

fn header(kind: tar::EntryType, name: &str, size: u64, mode: u32) -> tar::Header {
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

fn set_link(h: &mut tar::Header, target: &str) {
    let raw = &mut h.as_old_mut().linkname;
    raw.fill(0);
    raw[..target.len()].copy_from_slice(target.as_bytes());
}

fn layer(compression: Compression, entries: &[Entry]) -> Layer {
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

fn file(name: &str, data: &[u8]) -> Entry {
    Entry::File(name.to_owned(), data.to_vec(), 0o644)
}

/// A busybox root filesystem with an `app` user, and optionally extra files.
fn busybox_layer(compression: Compression, extra: Vec<Entry>) -> Layer {
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

fn sysprobe() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sysprobe");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sysprobe.c");
    let status = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc (with static glibc, Debian's gcc + libc6-dev) is needed");
    assert!(status.success(), "compiling sysprobe failed");
    fs::read(out).unwrap()
}

fn put_blob(reg: &Registry, repo: &str, blob: &[u8]) -> String {
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

fn put_manifest(reg: &Registry, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> String {
    let resp = ureq::put(&format!("http://{}/v2/{repo}/manifests/{tag}", reg.addr))
        .set("Content-Type", media_type)
        .send_bytes(body)
        .expect("put manifest");
    assert_eq!(resp.status(), 201);
    sha256(body)
}

/// Pushes an image and returns the manifest bytes' digest.
fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[&Layer],
    config: serde_json::Value,
) -> String {
    let mut config = config;
    config["architecture"] = "amd64".into();
    config["os"] = "linux".into();
    config["rootfs"] = serde_json::json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = put_blob(reg, repo, &config_bytes);
    let mut descs = Vec::new();
    for l in layers {
        let d = put_blob(reg, repo, &l.blob);
        descs.push(
            serde_json::json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()}),
        );
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": descs,
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    put_manifest(
        reg,
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &body,
    )
}

fn default_config() -> serde_json::Value {
    serde_json::json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}})
}

/// One test's world: a registry, a runner state root and a temp dir.
struct World {
    reg: Registry,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World {
            reg: Registry::start(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn image(&self, repo: &str) -> String {
        format!("{}/{repo}:latest", self.reg.addr)
    }

    fn push_busybox(&self, repo: &str, extra: Vec<Entry>) -> String {
        let l = busybox_layer(Compression::Gzip, extra);
        push_image(&self.reg, repo, "latest", &[&l], default_config());
        self.image(repo)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.arg("--root").arg(self.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn runner(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run runner")
    }

    fn ok(&self, args: &[&str]) -> String {
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

    fn layer_dirs(&self) -> Vec<PathBuf> {
        let dir = self.root().join("layers/sha256");
        let mut v: Vec<PathBuf> = fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn echo_hello_prints_hello() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    assert_eq!(w.ok(&["run", "--rm", &img, "echo", "hello"]), "hello\n");
}

#[test]
fn exit_codes_pass_through() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.runner(&["run", &img, "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    let out = w.runner(&["run", &img, "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
}

#[test]
fn killed_container_gives_128_plus_signal() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    // With --init the shell is not PID 1, so it can be killed from inside.
    let out = w.runner(&["run", "--init", &img, "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let out = w.runner(&["run", "--init", &img, "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
}

#[test]
fn sigterm_is_forwarded_and_stop_timeout_ends_in_sigkill() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let script = "echo ready; exec sleep 60";
    // With --init, SIGTERM reaches sleep and ends it: 128+15.
    let mut child = started(w.cmd(&["run", "--init", &img, "sh", "-c", script]));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(143));
    // Without --init, sleep is PID 1 and ignores SIGTERM: after --stop-timeout, SIGKILL.
    let mut child = started(w.cmd(&["run", "--stop-timeout", "1", &img, "sh", "-c", script]));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

/// Spawns a container whose command prints "ready" first, and waits for that line.
fn started(mut cmd: Command) -> Child {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    child
}

#[test]
fn memory_limit_breach_exits_137_and_says_oom() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.runner(&[
        "run",
        "--memory",
        "32m",
        &img,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("out of memory"), "{}", stderr(&out));
    // Under the limit the same command works.
    w.ok(&[
        "run",
        "--memory",
        "128m",
        &img,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
}

#[test]
fn fork_bomb_stops_at_pids_limit() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    // The inner shell forks until it cannot; the outer one then counts with
    // builtins only, since no fork is left for it.
    let script = r#"sh -c 'for i in $(seq 1 200); do sleep 30 & done' 2>/dev/null; set -- /proc/[0-9]*; echo $#"#;
    let out = w.runner(&["run", "--pids-limit", "64", &img, "sh", "-c", script]);
    let count: usize = stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}{}", stdout(&out), stderr(&out)));
    assert!(count <= 64, "{count} processes ran under --pids-limit 64");
    assert!(
        count >= 32,
        "only {count} processes: the limit was not what stopped the loop"
    );
    // The host is fine: another container starts at once.
    assert_eq!(w.ok(&["run", &img, "echo", "alive"]), "alive\n");
}

#[test]
fn default_seccomp_profile_refuses_unshare_mount_keyctl_and_clone3() {
    let w = World::new();
    let img = w.push_busybox(
        "probe",
        vec![Entry::File("sysprobe".into(), sysprobe(), 0o755)],
    );
    for (probe, errno) in [("unshare", 1), ("mount", 1), ("keyctl", 1), ("clone3", 38)] {
        let out = w.ok(&["run", "--init", &img, "/sysprobe", probe]);
        assert_eq!(out.trim(), format!("{probe} errno={errno}"));
    }
    // The same keyctl call succeeds when unconfined: the profile is what refuses it.
    let out = w.ok(&[
        "run",
        "--security-opt",
        "seccomp=unconfined",
        &img,
        "/sysprobe",
        "keyctl",
    ]);
    assert_eq!(out.trim(), "keyctl ok");
    // busybox's own unshare also fails.
    let out = w.runner(&["run", &img, "unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reboot_is_refused_inside_the_pid_namespace() {
    let w = World::new();
    let img = w.push_busybox(
        "probe",
        vec![Entry::File("sysprobe".into(), sysprobe(), 0o755)],
    );
    // No --init: the probe is PID 1 of the container's PID namespace.
    let out = w.ok(&["run", &img, "/sysprobe", "reboot"]);
    assert_eq!(out.trim(), "reboot errno=1");
}

#[test]
fn container_sees_only_its_processes_own_hostname_and_lo() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.ok(&[
        "run",
        "--hostname",
        "boxy",
        &img,
        "sh",
        "-c",
        "sleep 30 & ls -d /proc/[0-9]*; hostname; ls /sys/class/net",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["/proc/1", "/proc/2", "boxy", "lo"], "{out}");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "boxy");
}

#[test]
fn sysrq_trigger_and_proc_sys_are_not_writable_and_kcore_is_masked() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    // Kernels without CONFIG_MAGIC_SYSRQ have no sysrq-trigger: not writable either way.
    let out = w.runner(&["run", &img, "sh", "-c", "echo h > /proc/sysrq-trigger"]);
    assert_ne!(out.status.code(), Some(0));
    if Path::new("/proc/sysrq-trigger").exists() {
        assert!(
            stderr(&out).contains("Read-only file system"),
            "{}",
            stderr(&out)
        );
    }
    let out = w.runner(&[
        "run",
        &img,
        "sh",
        "-c",
        "echo strata > /proc/sys/kernel/domainname",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    // Masked files read empty and masked directories are empty, for each one this kernel has.
    let masked_files = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ];
    let masked_dirs = ["/proc/acpi", "/proc/scsi", "/sys/firmware"];
    let mut checked = 0;
    for f in masked_files.iter().filter(|f| Path::new(f).exists()) {
        assert_eq!(
            w.ok(&["run", &img, "sh", "-c", &format!("wc -c < {f}")])
                .trim(),
            "0",
            "{f}"
        );
        checked += 1;
    }
    for d in masked_dirs.iter().filter(|d| Path::new(d).exists()) {
        assert_eq!(w.ok(&["run", &img, "ls", "-A", d]), "", "{d}");
        checked += 1;
    }
    assert!(checked > 0, "this kernel has none of the masked paths");
}

#[test]
fn whiteout_and_opaque_directory_hide_lower_content() {
    let w = World::new();
    let base = busybox_layer(
        Compression::Gzip,
        vec![
            Entry::Dir("data/"),
            file("data/gone.txt", b"x"),
            file("data/kept.txt", b"x"),
            Entry::Dir("opq/"),
            file("opq/old.txt", b"x"),
        ],
    );
    let upper = layer(
        Compression::Zstd,
        &[
            Entry::Dir("data/"),
            file("data/.wh.gone.txt", b""),
            Entry::Dir("opq/"),
            file("opq/.wh..wh..opq", b""),
            file("opq/new.txt", b"x"),
        ],
    );
    push_image(
        &w.reg,
        "layered",
        "latest",
        &[&base, &upper],
        default_config(),
    );
    for userns in [None, Some("--userns")] {
        let mut args = vec!["run"];
        args.extend(userns);
        let img = w.image("layered");
        args.extend([img.as_str(), "ls", "/data", "/opq"]);
        assert_eq!(
            w.ok(&args),
            "/data:\nkept.txt\n\n/opq:\nnew.txt\n",
            "{userns:?}"
        );
    }
}

#[test]
fn read_only_rootfs_allows_writes_only_to_tmpfs_and_volumes() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let vol = w.dir.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let volume = format!("{}:/data", vol.display());
    let out = w.runner(&[
        "run",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "-v",
        &volume,
        &img,
        "sh",
        "-c",
        "touch /scratch/a && touch /data/b && echo ok; touch /c",
    ]);
    assert_eq!(stdout(&out), "ok\n");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(vol.join("b").exists());
    let ro = format!("{}:/data:ro", vol.display());
    let out = w.runner(&["run", "-v", &ro, &img, "touch", "/data/c"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!vol.join("c").exists());
}

#[test]
fn image_config_user_env_workdir_and_entrypoint_are_honoured() {
    let w = World::new();
    let l = busybox_layer(Compression::Plain, vec![]);
    let config = serde_json::json!({"config": {
        "Env": ["PATH=/bin", "GREETING=hi"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo $GREETING; id; pwd"],
        "WorkingDir": "/home/app",
        "User": "app",
    }});
    push_image(&w.reg, "conf", "latest", &[&l], config);
    let img = w.image("conf");
    assert_eq!(
        w.ok(&["run", &img]),
        "hi\nuid=1000(app) gid=1000(app) groups=10(wheel)\n/home/app\n"
    );
    assert_eq!(
        w.ok(&[
            "run",
            "-u",
            "0:10",
            "-e",
            "GREETING=yo",
            "-w",
            "/tmp",
            &img,
            "echo $GREETING; id -u; id -g; pwd"
        ]),
        "yo\n0\n10\n/tmp\n"
    );
    assert_eq!(
        w.ok(&["run", "--entrypoint", "/bin/echo", &img, "plain"]),
        "plain\n"
    );
}

#[test]
fn capabilities_are_dockers_default_set_with_no_new_privs() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.ok(&[
        "run",
        &img,
        "grep",
        "-E",
        "^(CapEff|CapBnd|NoNewPrivs|Seccomp):",
        "/proc/self/status",
    ]);
    // Docker's default set is 0x00000000a80425fb.
    assert_eq!(
        out,
        "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    let out = w.ok(&[
        "run",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "-u",
        "app",
        &img,
        "grep",
        "^Cap[EB]",
        "/proc/self/status",
    ]);
    assert_eq!(
        out,
        "CapEff:\t0000000000000000\nCapBnd:\t0000000000000001\n"
    );
}

fn pull_must_fail(w: &World, repo: &str, malicious: Layer, expected: &str) {
    let base = busybox_layer(Compression::Gzip, vec![]);
    push_image(
        &w.reg,
        repo,
        "latest",
        &[&base, &malicious],
        default_config(),
    );
    let out = w.runner(&["run", &w.image(repo), "true"]);
    assert_eq!(out.status.code(), Some(125), "{repo}: {}", stderr(&out));
    assert!(stderr(&out).contains(expected), "{repo}: {}", stderr(&out));
    assert!(!w
        .root()
        .join("layers/sha256")
        .join(&malicious.diff_id[7..])
        .exists());
    let leftovers: Vec<_> = fs::read_dir(w.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{repo}: left behind {leftovers:?}");
}

#[test]
fn unpack_refuses_path_traversal_and_leaves_nothing_behind() {
    let w = World::new();
    let cases = [
        (
            "dotdot",
            layer(Compression::Gzip, &[file("../escaped", b"x")]),
            "'..' component",
        ),
        (
            "absolute",
            layer(Compression::Gzip, &[file("/abs", b"x")]),
            "absolute path",
        ),
        (
            "symlink",
            layer(
                Compression::Gzip,
                &[
                    Entry::Dir("a/"),
                    Entry::Symlink("a/esc".into(), "../../../etc".into()),
                ],
            ),
            "symlink target escapes",
        ),
        (
            "hardlink",
            layer(
                Compression::Gzip,
                &[Entry::Hardlink(
                    "passwd".into(),
                    "../../../../etc/passwd".into(),
                )],
            ),
            "hardlink target escapes",
        ),
        (
            "parent",
            layer(
                Compression::Gzip,
                &[
                    Entry::Symlink("link".into(), "/tmp".into()),
                    file("link/planted", b"x"),
                ],
            ),
            "parent directory is a symlink",
        ),
    ];
    for (repo, malicious, expected) in cases {
        pull_must_fail(&w, repo, malicious, expected);
    }
    assert!(!Path::new("/tmp/planted").exists());
}

#[test]
fn layers_are_unpacked_once_and_shared_between_images() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let a = layer(Compression::Gzip, &[file("a.txt", b"a")]);
    let b = layer(Compression::Zstd, &[file("b.txt", b"b")]);
    push_image(&w.reg, "one", "latest", &[&base, &a], default_config());
    push_image(&w.reg, "two", "latest", &[&base, &b], default_config());
    // A pull unpacks the layers, as Docker's does, so the first run starts at once.
    w.ok(&["pull", &w.image("one")]);
    assert_eq!(w.layer_dirs().len(), 2);
    let base_dir = w.root().join("layers/sha256").join(&base.diff_id[7..]);
    let inode = fs::metadata(&base_dir).unwrap().ino();
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
    assert_eq!(fs::metadata(&base_dir).unwrap().ino(), inode);
    assert_eq!(w.ok(&["run", &w.image("two"), "cat", "/b.txt"]), "b");
    assert_eq!(fs::metadata(&base_dir).unwrap().ino(), inode);
    assert_eq!(w.layer_dirs().len(), 3);
    // Writes go to the container's upper dir, never into a shared layer.
    w.ok(&[
        "run",
        &w.image("one"),
        "sh",
        "-c",
        "echo changed > /a.txt; rm /bin/true",
    ]);
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
    // rmi + prune drop what only "two" used.
    w.ok(&["rmi", &w.image("two")]);
    w.ok(&["prune"]);
    assert_eq!(w.layer_dirs().len(), 2);
    assert!(w.ok(&["images"]).contains("/one:latest"));
}

/// Blob files in the runner's store (`<root>/store/storage/blobs/<alg>/<2 hex>/<hex>`),
/// as digests.
fn stored_blobs(w: &World) -> Vec<String> {
    let alg = w.root().join("store/storage/blobs/sha256");
    let mut out: Vec<String> = fs::read_dir(&alg)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|prefix| fs::read_dir(prefix.path()).unwrap().flatten())
        .map(|blob| format!("sha256:{}", blob.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

/// Runs the runner and fails, instead of hanging the suite, if it outlives `limit`.
fn runner_within(w: &World, args: &[&str], limit: Duration) -> Output {
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

#[test]
fn images_live_in_the_store_once_and_rmi_prune_frees_their_blobs() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let a = layer(Compression::Gzip, &[file("a.txt", b"a")]);
    let b = layer(Compression::Zstd, &[file("b.txt", b"b")]);
    let m_one = push_image(&w.reg, "one", "latest", &[&base, &a], default_config());
    let m_two = push_image(&w.reg, "two", "latest", &[&base, &b], default_config());
    // Pull, unpack and run in one invocation: the store's threads must be
    // gone before the sandbox clones (this used to hang).
    let out = runner_within(
        &w,
        &["run", &w.image("one"), "cat", "/a.txt"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a");
    w.ok(&["pull", &w.image("two")]);
    assert_eq!(w.ok(&["run", &w.image("two"), "cat", "/b.txt"]), "b");
    // Two manifests, two configs and three layers: the shared base is kept once.
    let blobs = stored_blobs(&w);
    assert_eq!(blobs.len(), 7, "{blobs:?}");
    for digest in [&m_one, &m_two, &sha256(&base.blob), &sha256(&b.blob)] {
        assert!(blobs.contains(digest), "{digest} not in the store");
    }
    assert!(!w.root().join("blobs").exists() && !w.root().join("images").exists());
    // The store sweeps blobs idle for at least a whole second: let the pull's age.
    std::thread::sleep(Duration::from_millis(1100));
    w.ok(&["rmi", &w.image("two")]);
    let out = w.ok(&["prune"]);
    assert!(out.contains("removed 1 layers"), "{out}");
    let blobs = stored_blobs(&w);
    assert_eq!(blobs.len(), 4, "{blobs:?}");
    assert!(!blobs.contains(&m_two) && !blobs.contains(&sha256(&b.blob)));
    assert!(blobs.contains(&m_one) && blobs.contains(&sha256(&base.blob)));
    let images = w.ok(&["images"]);
    assert!(
        images.contains("/one:latest") && !images.contains("/two:"),
        "{images}"
    );
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
}

#[test]
fn pull_resolves_an_index_to_the_host_platform_and_verifies_digests() {
    let w = World::new();
    let amd = busybox_layer(Compression::Zstd, vec![file("arch", b"amd64")]);
    let arm = layer(Compression::Gzip, &[file("arch", b"arm64")]);
    let m_amd = push_image(&w.reg, "multi", "amd64", &[&amd], default_config());
    let m_arm = push_image(&w.reg, "multi", "arm64", &[&arm], default_config());
    let size = |tag: &str| {
        ureq::get(&format!("http://{}/v2/multi/manifests/{tag}", w.reg.addr))
            .set("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap()
            .into_string()
            .unwrap()
            .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_arm, "size": size("arm64"), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_amd, "size": size("amd64"), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    put_manifest(
        &w.reg,
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    let out = w.ok(&["pull", &w.image("multi")]);
    assert!(out.contains(&m_amd), "{out}");
    assert_eq!(w.ok(&["run", &w.image("multi"), "cat", "/arch"]), "amd64");
    let out = w.runner(&["pull", "--platform", "linux/s390x", &w.image("multi")]);
    assert!(
        stderr(&out).contains("no image for platform linux/s390x"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn interrupted_download_resumes_with_range() {
    let w = World::new();
    let l = busybox_layer(Compression::Gzip, vec![]);
    push_image(&w.reg, "resume", "latest", &[&l], default_config());
    let tmp = w.root().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let partial = tmp.join(format!("sha256-{}.partial", &sha256(&l.blob)[7..]));
    // A corrupt first half proves the runner asked only for the rest:
    // a full re-download would have overwritten it.
    let half = l.blob.len() / 2;
    let mut corrupt = l.blob[..half].to_vec();
    corrupt[10] ^= 0xff;
    fs::write(&partial, &corrupt).unwrap();
    let out = w.runner(&["pull", &w.image("resume")]);
    assert!(stderr(&out).contains("hashed to"), "{}", stderr(&out));
    assert!(
        !partial.exists(),
        "a corrupt partial download must be discarded"
    );
    fs::write(&partial, &l.blob[..half]).unwrap();
    w.ok(&["pull", &w.image("resume")]);
    assert_eq!(
        w.ok(&["run", &w.image("resume"), "echo", "resumed"]),
        "resumed\n"
    );
}

/// Names under the runner's tmp dir of layers unpacked while downloading.
fn unpack_leftovers(w: &World) -> Vec<String> {
    fs::read_dir(w.root().join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("unpack-"))
        .collect()
}

#[test]
fn a_layer_unpacked_while_downloading_is_kept_only_when_both_digests_verify() {
    let w = World::new();
    let l = busybox_layer(Compression::Gzip, vec![]);
    // The config names another diff_id: the blob is fine, its content is not that layer.
    let lying = Layer {
        blob: l.blob.clone(),
        diff_id: sha256(b"some other layer"),
        media_type: l.media_type,
    };
    push_image(&w.reg, "lying", "latest", &[&lying], default_config());
    let out = w.runner(&["pull", &w.image("lying")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("diff_id mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(w.layer_dirs().is_empty(), "{:?}", w.layer_dirs());
    assert!(
        unpack_leftovers(&w).is_empty(),
        "{:?}",
        unpack_leftovers(&w)
    );

    // A download that fails its digest leaves no layer either, even though
    // its unpack (of a corrupt first half) ran alongside.
    let l = busybox_layer(Compression::Gzip, vec![file("honest.txt", b"yes")]);
    push_image(&w.reg, "honest", "latest", &[&l], default_config());
    let partial = w
        .root()
        .join("tmp")
        .join(format!("sha256-{}.partial", &sha256(&l.blob)[7..]));
    let mut corrupt = l.blob[..l.blob.len() / 2].to_vec();
    corrupt[10] ^= 0xff;
    fs::write(&partial, &corrupt).unwrap();
    let out = w.runner(&["pull", &w.image("honest")]);
    assert!(!out.status.success());
    assert!(w.layer_dirs().is_empty(), "{:?}", w.layer_dirs());
    assert!(
        unpack_leftovers(&w).is_empty(),
        "{:?}",
        unpack_leftovers(&w)
    );

    // The honest image then pulls, unpacked by the pull itself.
    w.ok(&["pull", &w.image("honest")]);
    assert_eq!(w.layer_dirs().len(), 1);
    assert_eq!(
        w.ok(&["run", &w.image("honest"), "echo", "verified"]),
        "verified\n"
    );
}

fn strata_cgroups() -> Vec<String> {
    ["memory", "pids", "cpu"]
        .iter()
        .flat_map(|c| {
            fs::read_dir(format!("/sys/fs/cgroup/{c}/strata"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .chain(
            fs::read_dir("/sys/fs/cgroup/strata")
                .into_iter()
                .flatten()
                .flatten(),
        )
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn cgroup_and_state_are_removed_after_run_and_after_a_runner_crash() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let id_prefix = w.ok(&["run", "--cpus", "0.5", "--memory", "64m", &img, "hostname"]);
    let id_prefix = id_prefix.trim();
    assert!(!strata_cgroups().iter().any(|c| c.starts_with(id_prefix)));
    assert_eq!(
        fs::read_dir(w.root().join("containers")).unwrap().count(),
        0
    );
    // Kill the runner itself: the container dies with it (PDEATHSIG) and the
    // next invocation removes the cgroup and state it left.
    let mut child = started(w.cmd(&[
        "run",
        "--cpus",
        "0.5",
        "--memory",
        "64m",
        "--pids-limit",
        "10",
        &img,
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    ]));
    let id = fs::read_dir(w.root().join("containers"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let id = id.to_string_lossy().into_owned();
    assert!(strata_cgroups().contains(&id));
    let limit = |file: &str| {
        let v1 = format!(
            "/sys/fs/cgroup/{}/strata/{id}/{file}",
            file.split('.').next().unwrap()
        );
        let v2 = format!("/sys/fs/cgroup/strata/{id}/{file}");
        fs::read_to_string(v1)
            .or_else(|_| fs::read_to_string(v2))
            .unwrap()
    };
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(limit("memory.max").trim(), (64 << 20).to_string());
        assert_eq!(limit("cpu.max").trim(), "50000 100000");
    } else {
        assert_eq!(
            limit("memory.limit_in_bytes").trim(),
            (64 << 20).to_string()
        );
        assert_eq!(limit("cpu.cfs_quota_us").trim(), "50000");
    }
    assert_eq!(limit("pids.max").trim(), "10");
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    w.ok(&["images"]);
    assert!(!strata_cgroups().contains(&id), "cgroup {id} left behind");
    assert_eq!(
        fs::read_dir(w.root().join("containers")).unwrap().count(),
        0
    );
}

#[test]
fn stdin_streams_into_the_container_with_i() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let mut child = w
        .cmd(&["run", "-i", &img, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"streamed\n")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "streamed\n");
}

#[test]
fn tty_gives_the_container_a_terminal() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.ok(&[
        "run",
        "-t",
        &img,
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty",
    ]);
    assert_eq!(out, "tty\r\n");
}

#[test]
fn bundle_runs_under_runc_with_the_same_output() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let script = "id; hostname; ls /; ls /dev; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; ls /sys/class/net";
    let args = ["--hostname", "same", &img, "sh", "-c", script];
    let mut run_args = vec!["run"];
    run_args.extend(args);
    let expected = w.ok(&run_args);
    let bundle = w.dir.path().join("bundle");
    let bundle_str = bundle.to_string_lossy().into_owned();
    w.ok(&[
        "bundle",
        "--hostname",
        "same",
        &img,
        &bundle_str,
        "sh",
        "-c",
        script,
    ]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][2], script);
    let runc_root = w.dir.path().join("runc");
    let name = format!("strata-test-{}", std::process::id());
    let _cleanup = RuncGuard(runc_root.clone(), name.clone());
    let out = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle", &bundle_str, &name])
        .stdin(Stdio::null())
        .output()
        .expect("runc must be installed (Debian package runc)");
    assert!(out.status.success(), "runc failed: {}", stderr(&out));
    assert_eq!(stdout(&out), expected);
}

/// Deletes a runc container on drop, in case the test failed midway.
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

#[test]
fn userns_maps_container_root_to_an_unprivileged_host_uid() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let vol = w.dir.path().join("owned");
    fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(200_000), Some(200_000)).unwrap();
    let volume = format!("{}:/data", vol.display());
    let out = w.ok(&[
        "run",
        "--userns=200000",
        "-v",
        &volume,
        &img,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; echo x > /new && touch /data/made && echo wrote; \
         stat -c %u /bin/busybox; echo extra >> /etc/group && echo changed",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    // Layers are id-mapped: the image's root-owned files belong to the
    // container's root, which can modify them (overlay copies them up).
    assert_eq!(
        words,
        ["0", "0", "200000", "65536", "wrote", "0", "changed"],
        "{out}"
    );
    // Files the container's root creates belong to the mapped host uid.
    assert_eq!(fs::metadata(vol.join("made")).unwrap().uid(), 200_000);
}

#[test]
fn device_nodes_outside_the_allow_list_cannot_be_used() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    // CAP_MKNOD lets root create /dev/kmsg's node, but the device cgroup forbids using it.
    let out = w.runner(&[
        "run",
        &img,
        "sh",
        "-c",
        "mknod /kmsg c 1 11 && echo strata-device-test > /kmsg",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // Allowed nodes work.
    assert_eq!(
        w.ok(&["run", &img, "sh", "-c", "head -c 3 /dev/zero | wc -c"])
            .trim(),
        "3"
    );
}

#[test]
fn unpack_preserves_links_special_files_ownership_modes_mtimes_and_xattrs() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let mut b = tar::Builder::new(Vec::new());
    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        data: &[u8],
        mode: u32,
        f: &dyn Fn(&mut tar::Header),
    ) {
        let mut h = header(kind, name, data.len() as u64, mode);
        f(&mut h);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    add(
        &mut b,
        tar::EntryType::Regular,
        "owned",
        b"data",
        0o4750,
        &|h| {
            h.set_uid(1000);
            h.set_gid(10);
            h.set_mtime(1_234_567_890);
        },
    );
    add(&mut b, tar::EntryType::Link, "hard", b"", 0o644, &|h| {
        set_link(h, "owned")
    });
    add(&mut b, tar::EntryType::Symlink, "soft", b"", 0o777, &|h| {
        set_link(h, "owned")
    });
    add(&mut b, tar::EntryType::Fifo, "fifo", b"", 0o640, &|_| {});
    add(&mut b, tar::EntryType::Char, "null", b"", 0o666, &|h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    });
    b.append_pax_extensions([("SCHILY.xattr.user.strata", &b"kept"[..])])
        .unwrap();
    add(
        &mut b,
        tar::EntryType::Regular,
        "tagged",
        b"x",
        0o600,
        &|_| {},
    );
    let tar = b.into_inner().unwrap();
    let special = Layer {
        diff_id: sha256(&tar),
        blob: tar,
        media_type: "application/vnd.oci.image.layer.v1.tar",
    };
    push_image(
        &w.reg,
        "special",
        "latest",
        &[&base, &special],
        default_config(),
    );
    let out = w.ok(&[
        "run",
        &w.image("special"),
        "stat",
        "-c",
        "%n %u %g %a %Y %F %h",
        "/owned",
        "/fifo",
    ]);
    assert_eq!(
        out,
        "/owned 1000 10 4750 1234567890 regular file 2\n/fifo 0 0 640 1700000000 fifo 1\n"
    );
    let dir = w.root().join("layers/sha256").join(&special.diff_id[7..]);
    let owned = fs::metadata(dir.join("owned")).unwrap();
    assert_eq!(fs::metadata(dir.join("hard")).unwrap().ino(), owned.ino());
    assert_eq!(fs::read_link(dir.join("soft")).unwrap(), Path::new("owned"));
    let null = fs::metadata(dir.join("null")).unwrap();
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let mut value = [0u8; 16];
    let path =
        std::ffi::CString::new(dir.join("tagged").into_os_string().into_encoded_bytes()).unwrap();
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.strata".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(&value[..n.max(0) as usize], b"kept");
}

#[test]
fn concurrent_runs_on_a_fresh_root_share_one_unpack() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let children: Vec<Child> = (0..4)
        .map(|i| {
            w.cmd(&["run", &img, "echo", &i.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{i}\n"));
    }
    assert_eq!(w.layer_dirs().len(), 1);
    let leftovers: Vec<_> = fs::read_dir(w.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn network_host_shares_the_host_interfaces() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let mut host: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let out = w.ok(&["run", "--network", "host", &img, "ls", "/sys/class/net"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), host);
}

#[test]
fn hostname_hosts_and_resolv_conf_are_provided() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let out = w.ok(&[
        "run",
        "--read-only",
        "--hostname",
        "named",
        &img,
        "sh",
        "-c",
        "cat /etc/hostname; grep -c named /etc/hosts",
    ]);
    assert_eq!(out, "named\n1\n");
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(
        w.ok(&["run", "--network", "host", &img, "cat", "/etc/resolv.conf"]),
        host_resolv
    );
}

#[test]
fn images_with_more_layers_than_one_mount_option_holds_run() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let extra: Vec<Layer> = (0..80)
        .map(|i| {
            layer(
                Compression::Plain,
                &[file(&format!("l{i}"), format!("{i}").as_bytes())],
            )
        })
        .collect();
    let mut all = vec![&base];
    all.extend(extra.iter());
    push_image(&w.reg, "tall", "latest", &all, default_config());
    assert_eq!(
        w.ok(&["run", &w.image("tall"), "cat", "/l0", "/l79"]),
        "079"
    );
}

#[test]
fn image_stop_signal_is_what_sigterm_to_the_runner_sends() {
    let w = World::new();
    let l = busybox_layer(Compression::Gzip, vec![]);
    let config = serde_json::json!({"config": {"Env": ["PATH=/bin"], "StopSignal": "SIGUSR1"}});
    push_image(&w.reg, "stopsig", "latest", &[&l], config);
    // PID 1 with a handler receives signals from the runner.
    let script = "trap 'exit 3' USR1; trap 'exit 4' TERM; echo ready; sleep 60 & wait";
    let mut child = started(w.cmd(&["run", &w.image("stopsig"), "sh", "-c", script]));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(3));
    // --stop-signal overrides the image.
    let mut child = started(w.cmd(&[
        "run",
        "--stop-signal",
        "TERM",
        &w.image("stopsig"),
        "sh",
        "-c",
        script,
    ]));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(4));
}
