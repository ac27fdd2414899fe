//! Landlock as the second wall, tested with the attack it is for: a host
//! directory descriptor that reaches the container (runc's CVE-2024-21626
//! leaked one to the host's cgroupfs). Here it is handed in on purpose with
//! `--preserve-fds 1`; the same script with `--security-opt landlock=off`
//! proves that the descriptor really reaches the host, so the refusals under
//! Landlock are Landlock's.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const SECRET: &str = "host-secret-9d41c7";

/// What a container process tries through descriptor 3 (`fd`: the path it
/// reaches it by, /proc/self/fd/3 or PID 1's /proc/1/fd/3).
fn attack_script(fd: &str) -> String {
    format!(
        "cat {fd}/secret; echo read=$?; \
         echo planted > {fd}/planted; echo write=$?; \
         ls {fd}/ >/dev/null; echo list=$?; \
         cat /etc/passwd >/dev/null; echo own-read=$?; \
         echo ok > /tmp/own; echo own-write=$?"
    )
}

/// A host directory holding the secret, as the test's own dir.
fn host_dir(w: &World) -> std::path::PathBuf {
    let dir = w.dir.path().join("host-dir");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("secret"), SECRET).unwrap();
    let _ = fs::remove_file(dir.join("planted"));
    dir
}

/// `runner --root R ARGS...` with `dir` open as descriptor 3.
fn with_fd3(w: &World, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"exec 3<"$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(dir)
        .arg(env!("CARGO_BIN_EXE_runner"))
        .arg("--root")
        .arg(w.root())
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Asserts what the script printed: the host directory refused (or, with
/// `landlock_off`, reached), and the container's own files usable either way.
fn assert_outcome(out: &Output, dir: &Path, landlock_off: bool) {
    let text = stdout(out);
    let all = format!("{text}{}", stderr(out));
    for own in ["own-read=0", "own-write=0"] {
        assert!(text.contains(own), "the container's own files: {all}");
    }
    if landlock_off {
        assert!(
            text.contains(SECRET) && text.contains("read=0") && text.contains("write=0"),
            "without Landlock the descriptor should reach the host (else this test proves nothing): {all}"
        );
        assert!(dir.join("planted").exists(), "{all}");
    } else {
        for refused in ["read=1", "write=1", "list=1"] {
            assert!(text.contains(refused), "{refused} expected: {all}");
        }
        assert!(!text.contains(SECRET), "the host file was read: {all}");
        assert!(
            all.matches("Permission denied").count() >= 3,
            "EACCES expected: {all}"
        );
        assert!(
            !dir.join("planted").exists(),
            "a file was created on the host: {all}"
        );
    }
}

#[test]
fn a_leaked_host_directory_descriptor_reaches_nothing_under_landlock() {
    let w = World::new();
    let image = w.push_busybox("landlock", vec![]);
    w.ok(&["pull", &image]);
    let info = w.ok(&["info"]);
    assert!(info.contains("landlock:   ABI "), "runner info: {info}");
    let dir = host_dir(&w);

    // PID 1 itself, through /proc/self/fd/3.
    let script = attack_script("/proc/self/fd/3");
    for landlock_off in [false, true] {
        let dir = host_dir(&w);
        let mut args = vec!["run", "--preserve-fds", "1"];
        if landlock_off {
            args.extend(["--security-opt", "landlock=off"]);
        }
        args.extend([image.as_str(), "sh", "-c", script.as_str()]);
        let out = with_fd3(&w, &dir, &args).output().unwrap();
        assert_outcome(&out, &dir, landlock_off);
    }

    // A process `exec` starts, through PID 1's descriptor: its own domain.
    let script = attack_script("/proc/1/fd/3");
    for landlock_off in [false, true] {
        let dir = host_dir(&w);
        let name = if landlock_off { "ll-off" } else { "ll-on" };
        let mut args = vec!["run", "--name", name, "--preserve-fds", "1"];
        if landlock_off {
            args.extend(["--security-opt", "landlock=off"]);
        }
        args.extend([image.as_str(), "sleep", "60"]);
        let pid1 = Running(
            with_fd3(&w, &dir, &args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.runner(&["exec", name, "true"]).status.success() {
            assert!(Instant::now() < deadline, "{name} never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = w.runner(&["exec", name, "sh", "-c", &script]);
        assert_outcome(&out, &dir, landlock_off);
        w.ok(&["kill", name]);
        drop(pid1);
    }

    // Descriptors that are not open are refused, before anything runs.
    let out = with_fd3(&w, &dir, &["run", "--preserve-fds", "2", &image, "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--preserve-fds 2: descriptor 4 is not open"),
        "{}",
        stderr(&out)
    );
    let out = with_fd3(
        &w,
        &dir,
        &["run", "-d", "--preserve-fds", "1", &image, "true"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("without -d"), "{}", stderr(&out));
}

/// A foreground `run`, killed and reaped on drop if the test failed midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
