//! What a new user meets (issue 13): a platform the image lacks, typos,
//! missing credentials, a registry that is down, TLS with a private CA, not
//! being root, Ctrl-C in a pull and its leftovers, an image without `/etc`,
//! a bundle written twice, `--version` and `info`. Every error is one line
//! that says what to do.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// The one line a failed command wrote to stderr, checked to be one line
/// without raw JSON.
fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", stdout(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(!err.contains('{'), "raw JSON in: {err}");
    err
}

/// Pushes a busybox image for `arch` under `repo:tag`; returns its manifest's (digest, size).
fn push_for_arch(w: &World, repo: &str, tag: &str, arch: &str) -> (String, usize) {
    let l = busybox_layer(Compression::Gzip, vec![]);
    let mut config = default_config();
    config["architecture"] = arch.into();
    let (_, manifest) = image_documents(&[&l], config.clone());
    (push_image(&w.reg, repo, tag, &[&l], config), manifest.len())
}

#[test]
fn pull_of_a_platform_a_single_manifest_lacks_fails_and_stores_nothing() {
    let w = World::new();
    push_for_arch(&w, "amd", "latest", "amd64");
    let img = w.image("amd");
    let out = w.runner(&["pull", "--platform", "linux/arm64", &img]);
    let err = one_line_error(&out);
    assert!(
        err.contains("linux/amd64") && err.contains("not linux/arm64"),
        "{err}"
    );
    assert!(!w.ok(&["images"]).contains(&img));
    assert!(
        w.layer_dirs().is_empty(),
        "a layer of the wrong platform was unpacked"
    );
    w.ok(&["pull", "--platform", "linux/amd64", &img]);
}

#[test]
fn pull_of_a_platform_an_index_lacks_names_the_platforms_it_has() {
    let w = World::new();
    let (amd, amd_size) = push_for_arch(&w, "multi", "amd", "amd64");
    let (s390x, s390x_size) = push_for_arch(&w, "multi", "s390x", "s390x");
    let media = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media, "digest": amd, "size": amd_size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": media, "digest": s390x, "size": s390x_size, "platform": {"os": "linux", "architecture": "s390x"}},
        ],
    }))
    .unwrap();
    put_manifest(
        &w.reg,
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let out = w.runner(&["pull", "--platform", "linux/arm64", &w.image("multi")]);
    let err = one_line_error(&out);
    assert!(
        err.contains("no matching manifest for linux/arm64 in the manifest list entries"),
        "{err}"
    );
    assert!(err.contains("linux/amd64, linux/s390x"), "{err}");
    assert!(w.layer_dirs().is_empty());
}

#[test]
fn a_tag_typo_says_no_such_tag() {
    let w = World::new();
    w.push_busybox("busybox", vec![]);
    let image = format!("{}/busybox:lates", w.reg.addr);
    let out = w.runner(&["pull", &image]);
    assert_eq!(
        one_line_error(&out),
        format!("runner: manifest unknown: {image} (no such tag)\n")
    );
}

#[test]
fn an_unknown_repository_is_named_in_one_line() {
    let w = World::new();
    let out = w.runner(&["pull", &format!("{}/nosuch:latest", w.reg.addr)]);
    let err = one_line_error(&out);
    // NAME_UNKNOWN, or MANIFEST_UNKNOWN from a registry that does not tell the two apart.
    let name_unknown = format!(
        "runner: repository unknown: {}/nosuch (no such repository)\n",
        w.reg.addr
    );
    let manifest_unknown = format!(
        "runner: manifest unknown: {}/nosuch:latest (no such tag)\n",
        w.reg.addr
    );
    assert!(err == name_unknown || err == manifest_unknown, "{err}");
}

#[test]
fn a_registry_that_is_down_is_named_once_and_asked_about() {
    let w = World::new();
    let image = w.push_busybox("app", vec![]);
    let addr = w.reg.addr.clone();
    let World { reg, dir } = w;
    drop(reg);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("--root")
        .arg(dir.path().join("state"))
        .args(["pull", &image])
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("is the registry running?"), "{err}");
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
}

/// A registry with user alice (password "secret") serving an image pushed before auth was on.
fn auth_world() -> (World, String) {
    let w = World::new();
    w.push_busybox("app", vec![]);
    let users = w.dir.path().join("users");
    let mut htpasswd = Command::new(std::env::var("STRATA_REGISTRY_BIN").unwrap())
        .arg("htpasswd")
        .arg(&users)
        .arg("alice")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    htpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(b"secret\n")
        .unwrap();
    assert!(htpasswd.wait().unwrap().success());
    let World { reg, dir } = w;
    let reg = reg.restart_with(&[OsStr::new("--htpasswd"), users.as_os_str()]);
    let image = format!("{}/app:latest", reg.addr);
    (World { reg, dir }, image)
}

#[test]
fn credentials_are_asked_for_and_a_wrong_password_is_named() {
    let (w, image) = auth_world();
    let host = w.reg.addr.clone();
    let out = w.runner(&["pull", &image]);
    assert_eq!(
        one_line_error(&out),
        format!("runner: {host} needs credentials: run `runner login {host}`\n")
    );
    let out = w.runner(&["login", &host, "-u", "alice", "-p", "wrong"]);
    assert_eq!(
        one_line_error(&out),
        format!("runner: login failed for {host}: invalid username or password\n")
    );
    w.ok(&["login", &host, "-u", "alice", "-p", "secret"]);
    w.ok(&["pull", &image]);
    let info = w.ok(&["info"]);
    assert!(info.contains(&host), "{info}");
    assert!(
        !info.contains("secret") && !info.contains("YWxpY2U6"),
        "{info}"
    );
}

/// A throwaway CA (in `dir`) and a certificate it signed for 127.0.0.1 and localhost.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl CLI");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=strata test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

#[test]
fn a_tls_registry_is_pulled_with_its_ca_in_the_certs_dir() {
    let w = World::new();
    w.push_busybox("app", vec![]);
    let (ca, cert, key) = make_certs(w.dir.path());
    let World { reg, dir } = w;
    let reg = reg.restart_with(&[
        OsStr::new("--tls-cert"),
        cert.as_os_str(),
        OsStr::new("--tls-key"),
        key.as_os_str(),
    ]);
    let w = World { reg, dir };
    let image = w.image("app");
    let certs = w.dir.path().join("certs.d");
    let certs_arg = certs.to_str().unwrap();
    let out = w.runner(&["--certs-dir", certs_arg, "pull", &image]);
    let err = one_line_error(&out);
    let wanted = certs.join(&w.reg.addr).join("ca.crt");
    assert!(err.contains("not trusted"), "{err}");
    assert!(
        err.contains(&format!("put its CA certificate in {}", wanted.display())),
        "{err}"
    );
    let out = w.runner(&["--insecure-registry", &w.reg.addr, "pull", &image]);
    let err = one_line_error(&out);
    assert!(err.contains("speaks HTTPS"), "{err}");
    fs::create_dir_all(wanted.parent().unwrap()).unwrap();
    fs::copy(&ca, &wanted).unwrap();
    w.ok(&["--certs-dir", certs_arg, "pull", &image]);
    assert_eq!(
        w.ok(&["--certs-dir", certs_arg, "run", &image, "echo", "over tls"]),
        "over tls\n"
    );
}

/// Not root is rootless mode: pointed at root's state root (`--root`), it
/// is refused with whose it is and what to do, before anything is done.
#[test]
fn not_root_is_refused_roots_state_root() {
    let w = World::new();
    let image = w.push_busybox("app", vec![]);
    w.ok(&["images"]); // the state root exists, root's and private
    for args in [
        vec!["pull", &image],
        vec!["run", &image, "true"],
        vec!["prune"],
        vec!["images"],
    ] {
        let out = w.cmd(&args).uid(65534).gid(65534).output().unwrap();
        assert_eq!(
            one_line_error(&out),
            format!(
                "runner: state root {} belongs to uid 0, not to this user (uid 65534); \
                 run `chown 65534 {}` or choose another --root\n",
                w.root().display(),
                w.root().display()
            )
        );
    }
}

/// `cmd` with SIGINT at its default action, whatever this test process
/// inherited: a background job of a non-interactive shell starts with
/// SIGINT ignored, and the runner rightly keeps an inherited SIG_IGN.
fn interruptible(mut cmd: Command) -> Command {
    // SAFETY: signal(2) is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// A registry speaking just enough HTTP to serve `app:latest`, whose layer
/// download stops halfway and stays open until the client goes away.
fn stalling_registry(layer: &Layer) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (config, manifest) = image_documents(&[layer], default_config());
    let config_digest = sha256(&config);
    let layer_digest = sha256(&layer.blob);
    let blob = layer.blob.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let (manifest, config, blob) = (manifest.clone(), config.clone(), blob.clone());
            let (config_digest, layer_digest) = (config_digest.clone(), layer_digest.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (body, stall): (Vec<u8>, bool) = if path.ends_with("/manifests/latest") {
                    (manifest, false)
                } else if path.ends_with(&config_digest) {
                    (config, false)
                } else if path.ends_with(&layer_digest) {
                    (blob, true)
                } else {
                    (b"{}".to_vec(), false)
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let sent = if stall { body.len() / 2 } else { body.len() };
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body[..sent]);
                if stall {
                    // Until the runner is gone.
                    let _ = std::io::Read::read(&mut reader, &mut [0u8; 1]);
                }
            });
        }
    });
    addr
}

fn unpack_dirs(root: &Path) -> Vec<PathBuf> {
    // No tmp/ until the runner made its root.
    fs::read_dir(root.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("unpack-"))
        .map(|e| e.path())
        .collect()
}

#[test]
fn ctrl_c_in_a_pull_says_interrupted_and_prune_removes_only_abandoned_unpacks() {
    let w = World::new();
    let layer = busybox_layer(Compression::Gzip, vec![]);
    let addr = stalling_registry(&layer);
    let image = format!("{addr}/app:latest");
    let pull = interruptible(w.cmd(&["--insecure-registry", &addr, "pull", &image]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unpack_dirs(&w.root()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pull never started unpacking"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The pull is alive: its unpack is locked, and kept.
    let out = w.ok(&["prune"]);
    assert!(out.contains("0 interrupted unpacks"), "{out}");
    assert_eq!(unpack_dirs(&w.root()).len(), 1);
    let killed = Command::new("kill")
        .args(["-INT", &pull.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = pull.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(stderr(&out), "runner: interrupted\n");
    assert_eq!(unpack_dirs(&w.root()).len(), 1, "left for the next command");
    let out = w.ok(&["prune"]);
    assert!(out.contains("1 interrupted unpacks"), "{out}");
    assert!(unpack_dirs(&w.root()).is_empty());
}

#[test]
fn ctrl_c_while_run_pulls_says_interrupted() {
    let w = World::new();
    let layer = busybox_layer(Compression::Gzip, vec![]);
    let addr = stalling_registry(&layer);
    let image = format!("{addr}/app:latest");
    let run = interruptible(w.cmd(&["--insecure-registry", &addr, "run", &image, "true"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while unpack_dirs(&w.root()).is_empty() {
        assert!(Instant::now() < deadline, "the run never started unpacking");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(stderr(&out), "runner: interrupted\n");
    let out = w.ok(&["prune"]);
    assert!(out.contains("1 interrupted unpacks"), "{out}");
}

#[test]
fn an_image_without_etc_gets_hostname_hosts_and_resolv_conf() {
    let w = World::new();
    let busybox = fs::read(BUSYBOX).unwrap();
    let mut entries = vec![
        Entry::Dir("bin/"),
        Entry::File("bin/busybox".into(), busybox, 0o755),
    ];
    for a in APPLETS {
        entries.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
    }
    let l = layer(Compression::Gzip, &entries);
    push_image(&w.reg, "noetc", "latest", &[&l], default_config());
    let out = w.ok(&[
        "run",
        "--hostname",
        "web1",
        &w.image("noetc"),
        "sh",
        "-c",
        "cat /etc/hostname; grep -c web1 /etc/hosts; test -f /etc/resolv.conf && echo resolv",
    ]);
    assert_eq!(out, "web1\n1\nresolv\n");
}

#[test]
fn a_relative_state_root_works_from_its_directory() {
    // The sandbox mounts layers after changing directory: a relative root
    // once failed with "mount overlay: No such file or directory".
    let w = World::new();
    let image = w.push_busybox("relroot", vec![]);
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(w.dir.path())
        .args(["--root", "state", "run", &image, "echo", "hi"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    // On ext4, the layer store and the scratch space carry its spread hint (`chattr +T`).
    let fs_type = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(w.root())
        .output()
        .unwrap();
    if stdout(&fs_type).trim() == "ext2/ext3" {
        for sub in ["layers", "tmp"] {
            let flags = Command::new("lsattr")
                .arg("-d")
                .arg(w.root().join(sub))
                .output()
                .unwrap();
            let text = stdout(&flags);
            assert!(
                text.split_whitespace().next().unwrap_or("").contains('T'),
                "{sub}: {text}"
            );
        }
    }
}

#[test]
fn bundle_twice_into_one_dir_replaces_its_own_output_but_not_foreign_content() {
    let w = World::new();
    let image = w.push_busybox("app", vec![]);
    let bundle = w.dir.path().join("bundle");
    let dir = bundle.to_str().unwrap();
    w.ok(&["bundle", &image, dir, "echo", "one"]);
    w.ok(&["bundle", &image, dir, "echo", "two"]);
    let config = fs::read_to_string(bundle.join("config.json")).unwrap();
    assert!(
        config.contains("\"two\"") && !config.contains("\"one\""),
        "{config}"
    );
    let foreign = w.dir.path().join("foreign");
    fs::create_dir_all(foreign.join("rootfs")).unwrap();
    fs::write(foreign.join("rootfs/keep"), b"mine").unwrap();
    let out = w.runner(&["bundle", &image, foreign.to_str().unwrap()]);
    let err = one_line_error(&out);
    assert!(err.contains("not written by `runner bundle`"), "{err}");
    assert_eq!(fs::read(foreign.join("rootfs/keep")).unwrap(), b"mine");
}

#[test]
fn version_names_the_commit_and_info_the_host() {
    let w = World::new();
    let version = w.ok(&["--version"]);
    assert!(version.starts_with("runner 0."), "{version}");
    // The commit the binary was built from: this checkout's HEAD or one
    // before it (others may commit between the build and this test).
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("no commit in {version}"));
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success())
    };
    if git(&["rev-parse", "--git-dir"]) {
        assert!(
            git(&["merge-base", "--is-ancestor", commit, "HEAD"]),
            "{commit} is not a commit of this checkout"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
    let info = w
        .cmd(&["info"])
        .env("DOCKER_CONFIG", w.dir.path())
        .output()
        .unwrap();
    let info = stdout(&info);
    assert!(
        info.contains(&format!("state root: {}", w.root().display())),
        "{info}"
    );
    for key in [
        "cgroup:     v",
        "seccomp:    ",
        "overlayfs:  ",
        "registries: none logged in",
    ] {
        assert!(info.contains(key), "{key} missing: {info}");
    }
}
