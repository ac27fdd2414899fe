//! Containers that live on, continued: a health check or `exec` past its
//! timeout leaves nothing running, log rotation against the real binary,
//! a simulated host crash (every monitor and container process killed with
//! state left on disk), and `exec` into a foreground `run`. Each test
//! removes its containers through the `Containers` guard.

use crate::containers::{cgroup_dirs, detached, eventually, inspect, json, Containers};
use crate::harness::*;
use std::fs;
use std::path::Path;

/// Host pids of the processes in container `id`'s cgroup.
fn cgroup_pids(id: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for dir in cgroup_dirs(id) {
        let procs = Path::new(&dir).join("cgroup.procs");
        for l in fs::read_to_string(procs).unwrap_or_default().lines() {
            if let Ok(p) = l.trim().parse::<i32>() {
                pids.push(p);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The command lines (NUL-separated args joined by spaces) of a container's processes.
fn cgroup_commands(id: &str) -> Vec<String> {
    cgroup_pids(id)
        .into_iter()
        .filter_map(|p| fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn a_health_check_past_its_timeout_leaves_nothing_running() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(
        &w,
        &[
            "--health-cmd",
            "sleep 1000; true",
            "--health-timeout",
            "1s",
            "--health-interval",
            "300ms",
            &img,
            "sleep",
            "600",
        ],
    );
    eventually("a timed-out check", || {
        inspect(&w, &id)["State"]["Health"]["Log"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    let first = inspect(&w, &id)["State"]["Health"]["Log"][0].clone();
    assert_eq!(first["ExitCode"], -1, "{first}");
    assert!(
        first["Output"]
            .as_str()
            .unwrap()
            .contains("exceeded timeout"),
        "{first}"
    );
    // The check that timed out left no `sleep 1000` behind (another check
    // may be running right now: stop them first).
    let record = json(&w.root().join("containers").join(&id).join("state.json"));
    let monitor = record["owner_pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(monitor, libc::SIGSTOP) };
    let left: Vec<String> = std::iter::repeat_with(|| cgroup_commands(&id))
        .take(50)
        .inspect(|_| std::thread::sleep(std::time::Duration::from_millis(100)))
        .find(|cmds| !cmds.iter().any(|c| c == "sleep 1000"))
        .unwrap_or_else(|| cgroup_commands(&id));
    unsafe { libc::kill(monitor, libc::SIGCONT) };
    assert_eq!(left, ["sleep 600"], "only PID 1 is left");
}

#[test]
fn exec_past_its_timeout_kills_every_process_it_started() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let id = detached(&w, &["--name", "timed", &img, "sleep", "600"]);
    // A shell with a background child, a pipeline and an orphan (its parent
    // exits at once, so the container's PID 1 inherits it).
    let script = "sleep 1000 & (sleep 1000 &) ; sleep 1000 | cat";
    let out = w.runner(&["exec", "--timeout", "1s", "timed", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));
    eventually("the killed processes to go", || {
        cgroup_commands(&id) == ["sleep 600"]
    });
    // Without a timeout, exec leaves what it started running (as Docker's does).
    w.ok(&["exec", "timed", "sh", "-c", "sleep 1000 >/dev/null 2>&1 &"]);
    assert!(cgroup_commands(&id).iter().any(|c| c == "sleep 1000"));
}

#[test]
fn a_chatty_container_keeps_its_log_bounded_and_logs_shows_the_newest() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let script =
        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; echo done; exec sleep 600";
    let id = detached(
        &w,
        &[
            "--log-opt",
            "max-size=4k",
            "--log-opt",
            "max-file=2",
            &img,
            "sh",
            "-c",
            script,
        ],
    );
    eventually("the last line", || {
        w.ok(&["logs", "--tail", "1", &id]) == "done\n"
    });
    let dir = w.root().join("containers").join(&id);
    let current = fs::metadata(dir.join("container.log")).unwrap().len();
    let older = fs::metadata(dir.join("container.log.1")).unwrap().len();
    assert!(current <= 4096 && older <= 4096, "{current} {older}");
    assert!(
        !dir.join("container.log.2").exists(),
        "max-file=2 keeps two files"
    );
    let logs = w.ok(&["logs", &id]);
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.last(), Some(&"done"));
    assert_eq!(lines[lines.len() - 2], "line 2999");
    assert!(
        !logs.contains("line 0\n"),
        "the oldest lines rotated away: {} lines kept",
        lines.len()
    );
    // What is kept is the newest, in order, without a gap.
    let numbers: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(numbers.windows(2).all(|p| p[1] == p[0] + 1), "{numbers:?}");
}

#[test]
fn after_a_simulated_host_crash_ps_tells_the_truth_and_start_works() {
    let w = World::new();
    let _c = Containers(&w);
    let img = w.push_busybox("busybox", vec![]);
    let a = detached(&w, &["--name", "crash-a", &img, "sleep", "600"]);
    let b = detached(
        &w,
        &[
            "--name",
            "crash-b",
            "--restart",
            "always",
            &img,
            "sleep",
            "600",
        ],
    );
    // The crash: every monitor and container process dies at once, and the
    // records on disk still say running.
    for id in [&a, &b] {
        let record = json(&w.root().join("containers").join(id).join("state.json"));
        for key in ["owner_pid", "pid"] {
            let pid = record[key].as_i64().unwrap() as i32;
            assert!(pid > 0, "{record}");
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        eventually("the monitor to be gone", || {
            let stat = fs::read_to_string(format!("/proc/{}/stat", record["owner_pid"]));
            stat.map_or(true, |s| s.contains(") Z"))
        });
    }
    let ps = w.ok(&["ps", "-a"]);
    for name in ["crash-a", "crash-b"] {
        let row = ps.lines().find(|l| l.contains(name)).unwrap();
        assert!(row.contains("Exited ("), "{ps}");
        assert!(!row.contains(" Up "), "{ps}");
    }
    assert!(
        !w.ok(&["ps"]).contains("crash-"),
        "nothing is shown running"
    );
    assert_eq!(inspect(&w, "crash-b")["State"]["Running"], false);
    for id in [&a, &b] {
        assert_eq!(cgroup_dirs(id), Vec::<String>::new(), "cgroup cleaned");
    }
    // start brings one back, whole.
    w.ok(&["start", "crash-a"]);
    assert_eq!(inspect(&w, "crash-a")["State"]["Running"], true);
    assert_eq!(
        w.ok(&["exec", "crash-a", "cat", "/proc/1/cmdline"]),
        "sleep\x00600\x00"
    );
    // rm leaves nothing: no record, cgroup or mount.
    w.ok(&["rm", "-f", "crash-a", "crash-b"]);
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for id in [&a, &b] {
        assert!(!w.root().join("containers").join(id).exists());
        assert_eq!(cgroup_dirs(id), Vec::<String>::new());
        assert!(!mounts.contains(id.as_str()), "{mounts}");
    }
}

#[test]
fn exec_joins_a_foreground_run() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let mut child = started(w.cmd(&[
        "run",
        "--stop-timeout",
        "1",
        "--name",
        "fg-exec",
        &img,
        "sh",
        "-c",
        "echo ready; exec sleep 600",
    ]));
    let out = w.runner(&["exec", "fg-exec", "cat", "/proc/1/cmdline"]);
    let host = w.runner(&["exec", "fg-exec", "hostname"]);
    w.ok(&["stop", "fg-exec"]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert_eq!(stdout(&out), "sleep\x00600\x00", "{}", stderr(&out));
    assert_eq!(stdout(&host).trim().len(), 12, "{}", stderr(&host));
    let out = w.runner(&["exec", "fg-exec", "true"]);
    assert_ne!(out.status.code(), Some(0));
}
