//! Containers that live on: `run -d` and its monitor, `ps`, `logs`,
//! `stop`, `kill`, `wait`, `rm`, `inspect`, restart policies, and the truth
//! after a monitor is killed. Every test removes its containers (by their
//! monitor's pid, then `rm -f`) even when it fails.

use crate::harness::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Removes every container of the world on drop: `rm -f`, then SIGKILL of
/// any monitor still recorded (by pid), so a failed test leaves nothing.
pub(crate) struct Containers<'a>(pub(crate) &'a World);

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        let dir = self.0.root().join("containers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.0.runner(&["rm", "-f", &id]);
            if let Some(pid) = json(&e.path().join("state.json"))["owner_pid"].as_i64() {
                if pid > 0 {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

pub(crate) fn json(path: &Path) -> serde_json::Value {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// `inspect` of one container.
pub(crate) fn inspect(w: &World, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

/// Waits (up to 30 s) for `check`, failing with `what` instead of hanging.
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn detached(w: &World, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    let id = w.ok(&all).trim().to_owned();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    id
}

fn log_lines(w: &World, name: &str) -> usize {
    w.ok(&["logs", name]).lines().count()
}

#[test]
fn detached_loop_logs_grow_follow_and_show_in_ps() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let script = "i=0; while true; do echo line $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done";
    let id = detached(&w, &["--name", "looper", &img, "sh", "-c", script]);
    let ps = w.ok(&["ps"]);
    let row = ps
        .lines()
        .find(|l| l.contains("looper"))
        .unwrap_or_default();
    assert!(row.starts_with(&id[..12]), "{ps}");
    assert!(row.contains(" Up "), "{ps}");
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    eventually("the log to have lines", || log_lines(&w, "looper") >= 4);
    let before = log_lines(&w, "looper");
    eventually("the log to grow", || log_lines(&w, &id[..8]) > before);
    // stdout and stderr stay apart, each line timestamped with -t.
    let out = w.runner(&["logs", "-t", "--tail", "4", "looper"]);
    let stdout = stdout(&out);
    assert_eq!(stdout.lines().count() + stderr(&out).lines().count(), 4);
    let first = stdout.lines().next().unwrap();
    assert!(first.contains("Z line "), "{first}");
    assert!(first.starts_with("20"), "{first}");
    assert!(stderr(&out).contains("err "), "{}", stderr(&out));
    // -f goes on with lines written after it started.
    let mut follow = w
        .cmd(&["logs", "-f", "--tail", "0", "looper"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follow.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        seen.push(line);
    }
    assert!(seen.iter().all(|l| l.starts_with("line ")), "{seen:?}");
    // ... and ends when the container does.
    w.ok(&["stop", "-t", "1", "looper"]);
    let status = follow.wait().unwrap();
    assert!(status.success());
    let state = inspect(&w, "looper");
    assert_eq!(state["State"]["Status"], "exited");
    assert_eq!(state["Name"], "/looper");
    assert_eq!(state["Id"], id.as_str());
    let ps = w.ok(&["ps"]);
    assert!(!ps.contains("looper"), "{ps}");
    let ps = w.ok(&["ps", "-a", "--filter", "name=looper", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(ps.lines().next().unwrap()).unwrap();
    assert!(
        row["Status"].as_str().unwrap().starts_with("Exited ("),
        "{row}"
    );
    assert_eq!(row["State"], "exited");
}

#[test]
fn stop_kills_a_pid_1_ignoring_sigterm_after_the_timeout() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    // sleep as PID 1 has no SIGTERM handler: the kernel drops the signal.
    let id = detached(&w, &[&img, "sleep", "600"]);
    let started = Instant::now();
    w.ok(&["stop", "-t", "2", &id[..12]]);
    let took = started.elapsed();
    let state = inspect(&w, &id);
    assert_eq!(state["State"]["ExitCode"], 137, "{state}");
    assert_eq!(state["State"]["Running"], false);
    assert!(
        took >= Duration::from_secs(1),
        "SIGKILL came after the timeout, not at once: {took:?}"
    );
    assert_eq!(w.ok(&["wait", &id]).trim(), "137");
    let ps = w.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
}

#[test]
fn the_images_stop_signal_stops_it() {
    let w = World::new();
    let _c = Containers(&w);
    let l = busybox_layer(Compression::Gzip, vec![]);
    let config = serde_json::json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "StopSignal": "SIGUSR1"}});
    push_image(&w.reg, "usr1", "latest", &[&l], config);
    let img = w.image("usr1");
    let script = "trap 'echo got usr1; exit 7' USR1; trap 'echo got term; exit 8' TERM; echo ready; while true; do sleep 0.1; done";
    let id = detached(&w, &[&img, "sh", "-c", script]);
    eventually("the trap to be set", || {
        w.ok(&["logs", &id]).contains("ready")
    });
    w.ok(&["stop", &id]);
    assert_eq!(inspect(&w, &id)["State"]["ExitCode"], 7);
    assert!(w.ok(&["logs", &id]).contains("got usr1"));
    assert_eq!(inspect(&w, &id)["Config"]["StopSignal"], "SIGUSR1");
}

#[test]
fn on_failure_2_runs_three_times() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(
        &w,
        &[
            "--restart",
            "on-failure:2",
            &img,
            "sh",
            "-c",
            "echo run; exit 3",
        ],
    );
    let code = w.ok(&["wait", &id]);
    assert_eq!(code.trim(), "3", "{}", inspect(&w, &id));
    assert_eq!(w.ok(&["logs", &id]).matches("run\n").count(), 3);
    let state = inspect(&w, &id);
    assert_eq!(state["RestartCount"], 2);
    assert_eq!(state["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(state["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // A clean exit is not a failure.
    let id = detached(&w, &["--restart", "on-failure", &img, "true"]);
    assert_eq!(w.ok(&["wait", &id]).trim(), "0");
    assert_eq!(inspect(&w, &id)["RestartCount"], 0);
}

pub(crate) fn cgroup_dirs(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for hierarchy in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join("strata").join(id);
        if dir.exists() {
            found.push(dir.display().to_string());
        }
    }
    if Path::new("/sys/fs/cgroup/strata").join(id).exists() {
        found.push(id.to_owned());
    }
    found
}

#[test]
fn rm_leaves_no_mount_cgroup_or_state() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(&w, &[&img, "sleep", "600"]);
    assert!(
        !cgroup_dirs(&id).is_empty(),
        "a running container has a cgroup"
    );
    let out = w.runner(&["rm", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is running"), "{}", stderr(&out));
    w.ok(&["rm", "-f", &id]);
    assert!(!w.root().join("containers").join(&id).exists());
    assert_eq!(cgroup_dirs(&id), Vec::<String>::new());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
    let out = w.runner(&["inspect", &id]);
    assert_ne!(out.status.code(), Some(0));
    // prune takes the ended ones only.
    let ended = detached(&w, &[&img, "true"]);
    w.ok(&["wait", &ended]);
    let running = detached(&w, &[&img, "sleep", "600"]);
    let pruned = w.ok(&["container", "prune"]);
    assert!(pruned.contains(&ended), "{pruned}");
    assert!(!pruned.contains(&running), "{pruned}");
    assert!(w.root().join("containers").join(&running).exists());
}

#[test]
fn a_killed_monitor_is_never_shown_up() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(&w, &["--name", "orphan", &img, "sleep", "600"]);
    let record = json(&w.root().join("containers").join(&id).join("state.json"));
    let monitor = record["owner_pid"].as_i64().unwrap() as i32;
    let pid1 = record["pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0 && pid1 > 0, "{record}");
    let parent = fs::read_to_string(format!("/proc/{pid1}/stat")).unwrap();
    let ppid: i32 = parent
        .rsplit(')')
        .next()
        .unwrap()
        .split(' ')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, monitor, "the monitor is PID 1's parent");
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    eventually("the monitor to be gone", || {
        !Path::new(&format!("/proc/{monitor}")).exists()
            || fs::read_to_string(format!("/proc/{monitor}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    let ps = w.ok(&["ps", "-a"]);
    let row = ps.lines().find(|l| l.contains("orphan")).unwrap();
    assert!(!row.contains(" Up "), "{ps}");
    assert!(row.contains("Exited (255)"), "{ps}");
    assert_eq!(inspect(&w, "orphan")["State"]["Running"], false);
    assert_eq!(
        cgroup_dirs(&id),
        Vec::<String>::new(),
        "the next command cleaned the cgroup"
    );
    eventually("PID 1 to be gone", || {
        !Path::new(&format!("/proc/{pid1}")).exists()
    });
    w.ok(&["rm", "orphan"]);
}

#[test]
fn names_are_unique_and_lookups_say_what_is_wrong() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(&w, &["--name", "web", &img, "true"]);
    let out = w.runner(&["run", "-d", "--name", "web", &img, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    let out = w.runner(&["stop", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "runner: No such container: nope");
    let other = detached(&w, &[&img, "true"]);
    assert_eq!(w.ok(&["wait", &id[..10]]).trim(), "0");
    // A default name is made up, Docker-style.
    let name = inspect(&w, &other)["Name"].as_str().unwrap().to_owned();
    assert!(name.starts_with('/') && name.contains('_'), "{name}");
}

#[test]
fn a_foreground_run_shows_in_ps_while_it_runs() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let mut child = started(w.cmd(&[
        "run",
        "--stop-timeout",
        "1",
        "--name",
        "fg",
        &img,
        "sh",
        "-c",
        "echo ready; exec sleep 600",
    ]));
    let ps = w.ok(&["ps"]);
    let killed = ps.lines().any(|l| l.contains("fg") && l.contains(" Up "));
    w.ok(&["stop", "fg"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(killed, "{ps}");
    assert!(
        !w.ok(&["ps", "-a"]).contains("fg"),
        "a foreground container is removed when it ends"
    );
}

#[test]
fn exec_joins_the_container_with_its_confinement() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(&w, &["--name", "box", &img, "sleep", "600"]);
    // PID 1 is the container's, and so is the hostname.
    assert_eq!(
        w.ok(&["exec", "box", "cat", "/proc/1/cmdline"]),
        "sleep\x00600\x00"
    );
    assert_eq!(w.ok(&["exec", "box", "hostname"]).trim(), &id[..12]);
    let status = w.ok(&["exec", "box", "cat", "/proc/self/status"]);
    let field = |s: &str, k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_owned()
    };
    let pid1 = fs::read_to_string(format!(
        "/proc/{}/status",
        json(&w.root().join("containers").join(&id).join("state.json"))["pid"]
    ))
    .unwrap();
    assert_eq!(field(&status, "Seccomp:"), "Seccomp:\t2", "{status}");
    assert_eq!(field(&status, "NoNewPrivs:"), "NoNewPrivs:\t1");
    assert_eq!(field(&status, "CapEff:"), field(&pid1, "CapEff:"));
    assert_eq!(field(&status, "CapBnd:"), field(&pid1, "CapBnd:"));
    // The seccomp filter refuses what it refuses PID 1.
    let out = w.runner(&["exec", "box", "unshare", "-m", "true"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    // Exit codes, environment, working directory and user.
    let out = w.runner(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let out = w.ok(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "box",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "bar /tmp 1000\n");
    // Nothing of the runner's descriptors: only 0, 1, 2 (and the one ls opens).
    let fds = w.ok(&["exec", "box", "ls", "/proc/self/fd"]);
    assert_eq!(
        fds.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{fds}"
    );
    let out = w.runner(&["exec", "nothere", "true"]);
    assert_eq!(stderr(&out).trim(), "runner: No such container: nothere");
}

#[test]
fn health_checks_turn_healthy_and_unhealthy() {
    let w = World::new();
    let _c = Containers(&w);
    let l = busybox_layer(Compression::Gzip, vec![]);
    let check = serde_json::json!({"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 200_000_000u64, "Timeout": 5_000_000_000u64, "Retries": 2});
    let config = serde_json::json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Healthcheck": check}});
    push_image(&w.reg, "checked", "latest", &[&l], config);
    let img = w.image("checked");
    // The image's check: fails until /tmp/ok exists, then healthy.
    let good = detached(
        &w,
        &[&img, "sh", "-c", "sleep 1; touch /tmp/ok; exec sleep 600"],
    );
    eventually("healthy", || {
        inspect(&w, &good)["State"]["Health"]["Status"] == "healthy"
    });
    let ps = w.ok(&["ps"]);
    assert!(ps.contains("(healthy)"), "{ps}");
    let health = &inspect(&w, &good)["State"]["Health"];
    assert_eq!(health["FailingStreak"], 0);
    assert_eq!(
        health["Log"].as_array().unwrap().last().unwrap()["ExitCode"],
        0
    );
    // A check that always fails: unhealthy after its retries, with its output logged.
    let bad = detached(
        &w,
        &[
            "--health-cmd",
            "echo nope; exit 1",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
            &img,
            "sleep",
            "600",
        ],
    );
    eventually("unhealthy", || {
        inspect(&w, &bad)["State"]["Health"]["Status"] == "unhealthy"
    });
    let health = &inspect(&w, &bad)["State"]["Health"];
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2, "{health}");
    assert_eq!(health["Log"][0]["Output"], "nope\n");
    assert_eq!(health["Log"][0]["ExitCode"], 1);
    // --no-healthcheck drops the image's.
    let none = detached(&w, &["--no-healthcheck", &img, "sleep", "600"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(inspect(&w, &none)["State"]["Health"].is_null());
}

#[test]
fn kill_start_restart_and_the_always_policy() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let script = "echo started; trap 'exit 9' USR2; while true; do sleep 0.1; done";
    let id = detached(&w, &[&img, "sh", "-c", script]);
    let (wr, idr) = (&w, &id);
    let starts = |n: usize| move || wr.ok(&["logs", idr]).matches("started").count() == n;
    eventually("the first start", starts(1));
    w.ok(&["kill", "-s", "USR2", &id[..12]]);
    assert_eq!(w.ok(&["wait", &id]).trim(), "9");
    w.ok(&["start", &id]);
    eventually("the second start", starts(2));
    assert_eq!(inspect(&w, &id)["State"]["Status"], "running");
    w.ok(&["restart", "-t", "1", &id]);
    eventually("the third start", starts(3));
    assert_eq!(inspect(&w, &id)["State"]["Running"], true);
    // always: a kill brings it back, a stop does not.
    let always = detached(
        &w,
        &[
            "--restart",
            "always",
            &img,
            "sh",
            "-c",
            "echo up; exec sleep 600",
        ],
    );
    let alr = &always;
    let ups = |n: usize| move || wr.ok(&["logs", alr]).matches("up").count() == n;
    eventually("the first run", ups(1));
    w.ok(&["kill", &always]);
    eventually("a restart after kill", ups(2));
    assert_eq!(inspect(&w, &always)["RestartCount"], 1);
    w.ok(&["stop", "-t", "1", &always]);
    assert_eq!(inspect(&w, &always)["State"]["Status"], "exited");
    assert_eq!(w.ok(&["wait", &always]).trim(), "137");
}

#[test]
fn concurrent_runs_with_one_name_make_one_container() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            w.cmd(&["run", "-d", "--name", "dup", &img, "sleep", "600"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{:?}", outs.iter().map(stderr).collect::<Vec<_>>());
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(stderr(o).contains("already in use"), "{}", stderr(o));
    }
    let ps = w.ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.lines().count(), 1, "{ps}");
    // Every record still reads.
    assert_eq!(inspect(&w, "dup")["State"]["Running"], true);
}
