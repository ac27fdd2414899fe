//! The command line as a new user meets it: a log reader that goes away,
//! SIGTERM, data directories that do not exist, a taken port, the
//! htpasswd prompt (through a pseudo-terminal), log formats and colours,
//! `--version`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use reqwest::{Client, StatusCode};

use crate::harness::Registry;

const BIN: &str = env!("CARGO_BIN_EXE_registry");

/// `registry ARGS` in `dir`, stdin closed.
fn registry(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The value of an unlabelled counter in `/metrics`.
async fn counter(reg: &Registry, name: &str) -> u64 {
    let text = Client::new()
        .get(reg.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .parse()
        .unwrap()
}

/// Many requests, each logged at `debug`: more log than a pipe holds.
async fn serve_many(reg: &Registry) {
    let client = Client::new();
    for _ in 0..3000 {
        let r = client.get(reg.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// `registry serve 2>&1 | head -1`, a log reader that stops reading, and
/// a closed stderr: requests are still served, lines the reader could not
/// take are counted, and SIGTERM still stops the registry.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_reader_that_goes_away_never_stops_serving_or_shutdown() {
    for case in ["reader closed", "reader stalled", "stderr closed"] {
        let launch = Registry::launch_fresh().log_level("debug");
        let mut reg = match case {
            "stderr closed" => launch.close_stderr().start(),
            _ => launch.stderr(Stdio::piped()).start(),
        };
        if case == "reader closed" {
            reg.close_stderr_pipe();
        }
        serve_many(&reg).await;
        if case != "stderr closed" {
            assert!(
                counter(&reg, "strata_log_lines_dropped_total").await > 0,
                "{case}: dropped lines are counted"
            );
        }
        let status = reg.terminate();
        assert!(status.success(), "{case}: {status}");
    }
}

#[test]
fn maintenance_commands_refuse_a_data_dir_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["gc", "fsck"] {
        let out = registry(dir.path(), &[command, "--data", "typo"]);
        assert!(!out.status.success(), "{command}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "registry: data directory ./typo does not exist; \
             pass --data DIR of an existing registry\n",
            "{command}"
        );
        assert!(!dir.path().join("typo").exists(), "{command} created it");
    }
}

#[test]
fn serve_on_a_taken_port_names_the_address_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = registry(dir.path(), &["serve", "--listen", &addr, "--data", "new"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("registry: {addr} is already in use")),
        "{stderr}"
    );
    assert!(!dir.path().join("new").exists(), "the data dir was created");
}

/// Whether `file` holds `user` with `password`.
fn has_user(file: &Path, user: &str, password: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(u, hash)| u == user && bcrypt::verify(password, hash).unwrap())
}

#[test]
fn htpasswd_reads_a_piped_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let mut child = Command::new(BIN)
        .args(["htpasswd", "htpasswd", "bob"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped secret\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(has_user(&file, "bob", "piped secret"));
}

/// Drives `argv` on a pseudo-terminal: answers each prompt in turn, prints
/// all the terminal showed, exits with the command's status.
const PTY_DRIVER: &str = r#"
import os, pty, signal, sys
signal.alarm(60)
answers = [a.encode() for a in sys.argv[1].split("|")]
prompts = [b"Password: ", b"Retype password: "]
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
seen = b""
def read():
    global seen
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        chunk = b""
    seen += chunk
    return chunk
for prompt, answer in zip(prompts, answers):
    start = len(seen)
    while prompt not in seen[start:]:
        if not read():
            break
    os.write(fd, answer + b"\n")
while read():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// `registry htpasswd FILE USER` at a terminal, typing `answers`.
fn htpasswd_at_a_terminal(dir: &Path, answers: &str) -> Output {
    Command::new("python3")
        .args([
            "-c", PTY_DRIVER, answers, BIN, "htpasswd", "htpasswd", "carol",
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn htpasswd_at_a_terminal_prompts_twice_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let out = htpasswd_at_a_terminal(dir.path(), "typed secret|typed secret");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("Password: "), "{shown:?}");
    assert!(shown.contains("Retype password: "), "{shown:?}");
    assert!(!shown.contains("typed secret"), "echoed: {shown:?}");
    assert!(has_user(&file, "carol", "typed secret"));
    let out = htpasswd_at_a_terminal(dir.path(), "new secret|a typo");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("do not match"), "{shown:?}");
    assert!(has_user(&file, "carol", "typed secret"), "unchanged");
}

/// Text logs to a file carry no colour codes; `--log-format`,
/// `STRATA_LOG_FORMAT` and the config's `log_format` each give JSON.
#[test]
fn logs_to_a_file_have_no_colour_and_every_way_to_ask_for_json_works() {
    let mut reg = Registry::launch_fresh()
        .log_level("info")
        .log_file()
        .start();
    assert!(reg.terminate().success());
    let text = reg.log();
    assert!(text.contains("registry listening"), "{text}");
    assert!(!text.contains('\x1b'), "colour codes in a file: {text:?}");
    drop(reg);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("strata.toml"), "log_format = \"json\"\n").unwrap();
    let launches = [
        (
            "flag",
            Registry::launch(dir.path()).args(["--log-format", "json"]),
        ),
        (
            "env",
            Registry::launch(dir.path()).env("STRATA_LOG_FORMAT", "json"),
        ),
        (
            "config",
            Registry::launch(dir.path()).args(["--config", "strata.toml"]),
        ),
    ];
    for (how, launch) in launches {
        let mut reg = launch.data().log_level("info").log_file().start();
        assert!(reg.terminate().success(), "{how}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{how}: {e}: {l}")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l["fields"]["message"] == "registry listening"),
            "{how}: {log}"
        );
    }
    // Maintenance commands take the flag too.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = registry(
        dir.path(),
        &["gc", "--log-format", "json", "--data", "empty"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn version_names_the_commit() {
    let out = registry(Path::new("."), &["--version"]);
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let commit = version
        .trim()
        .strip_prefix(&format!("registry {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version:?}"));
    let in_git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        assert!(
            commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit:?}"
        );
    } else {
        assert_eq!(commit, "unknown");
    }
}
