//! A container's life: output, exit codes, signals, stdin and terminals, the
//! image config, clean-up after a run or a crash, and the runc bundle.

use crate::harness::*;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;

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
    let name = format!("strata-test-{}", std::process::id());
    let out = runc_run(&w, &bundle, &name);
    assert_eq!(stdout(&out), expected);
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
