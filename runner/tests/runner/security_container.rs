//! What a hostile image or container process tries against what entered the
//! container with it, one test per attack: the runner's descriptors,
//! environment, memory and binary behind PID 1; the caller's terminal;
//! inheritable capabilities; a passwd entry named like a uid; symlinks in
//! place of `/proc`, `/sys` and `/dev`; and the smaller defects (a PID 1
//! that asks to be traced, tmpfs flags, supplementary groups, names, a
//! dangling working directory, `/sys/fs/cgroup`). The probes are in
//! `escape_probe.c`.

use crate::harness::*;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Busybox with the probe and the applets these tests need.
fn probe_image(w: &World, repo: &str, mut extra: Vec<Entry>) -> String {
    extra.push(Entry::File(
        "escape_probe".into(),
        static_probe("escape_probe"),
        0o755,
    ));
    for applet in ["tr", "sha256sum", "readlink", "cp", "cut", "sort"] {
        extra.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    w.push_busybox(repo, extra)
}

const ENV_SECRET: &str = "env-secret-7f3a9c";
const FILE_SECRET: &str = "file-secret-52be01";

/// Runs `runner --root R ARGS...` the way a careless caller would: with a
/// secret in its environment and a secret host file open, without
/// close-on-exec, as fd 7 (the shell's `exec 7<` opens it so).
fn run_with_host_secrets(w: &World, args: &[&str]) -> Output {
    let marker = w.dir.path().join("marker");
    fs::write(&marker, FILE_SECRET).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(r#"exec 7<"$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(&marker)
        .arg(env!("CARGO_BIN_EXE_runner"))
        .arg("--root")
        .arg(w.root())
        .args(args)
        .env("STRATA_HOST_SECRET", ENV_SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let start = out
        .find(&format!("=={name}\n"))
        .unwrap_or_else(|| panic!("no section {name} in {out}"));
    let rest = &out[start + name.len() + 3..];
    rest.find("\n==").map_or(rest, |end| &rest[..end])
}

/// What a container process sees of PID 1 through /proc/1.
const PID1_SCRIPT: &str = "echo ==fd; ls -l /proc/1/fd 2>&1; \
    echo ==environ; tr '\\0' '\\n' < /proc/1/environ 2>&1; \
    echo ==fd7; cat /proc/1/fd/7 2>&1; \
    echo ==exe; sha256sum /proc/1/exe 2>&1; \
    echo ==mem; /escape_probe memgrep 1 env-secret- 7f3a9c; \
    echo ==self; ls /proc/self/fd; tr '\\0' '\\n' < /proc/self/environ";

fn assert_pid1_holds_nothing_of_the_host(out: &Output) {
    let text = stdout(out);
    assert!(out.status.success(), "{text}{}", stderr(out));
    // Either PID 1's descriptors are out of reach, or none is the host's.
    let fds = section(&text, "fd");
    for fd in fds.lines() {
        assert!(
            fd.contains("Permission denied") || !(fd.contains(" 7 -> ") || fd.contains("marker")),
            "PID 1 holds descriptor {fd:?}:\n{text}"
        );
    }
    let environ = section(&text, "environ");
    assert!(
        !environ.contains(ENV_SECRET) && !environ.contains("STRATA_HOST_SECRET"),
        "PID 1 has the runner's environment:\n{text}"
    );
    assert!(
        !section(&text, "fd7").contains(FILE_SECRET),
        "the host file is readable through /proc/1/fd/7:\n{text}"
    );
    let runner = hex::encode(Sha256::digest(
        fs::read(env!("CARGO_BIN_EXE_runner")).unwrap(),
    ));
    assert!(
        !section(&text, "exe").contains(&runner),
        "/proc/1/exe is the runner:\n{text}"
    );
    let mem = section(&text, "mem").trim();
    assert!(
        mem == "memgrep absent" || mem.starts_with("memgrep errno="),
        "PID 1's memory holds the runner's secret: {mem}\n{text}"
    );
    let own = section(&text, "self");
    assert!(
        !own.contains(ENV_SECRET) && !own.lines().any(|l| l.trim() == "7"),
        "the workload got the runner's descriptor or environment:\n{text}"
    );
}

#[test]
fn init_pid1_holds_no_host_descriptor_environment_memory_or_binary() {
    let w = World::new();
    let img = probe_image(&w, "probe", vec![]);
    // The probe finds the secret where it is: it can see a leak.
    let seen = w.ok(&[
        "run",
        "-e",
        &format!("X={ENV_SECRET}"),
        &img,
        "/escape_probe",
        "memgrep",
        "self",
        "env-secret-",
        "7f3a9c",
    ]);
    assert_eq!(seen.trim(), "memgrep found");
    for user in ["0", "app"] {
        let out = run_with_host_secrets(
            &w,
            &["run", "--init", "-u", user, &img, "sh", "-c", PID1_SCRIPT],
        );
        assert_pid1_holds_nothing_of_the_host(&out);
    }
    // PID 1 is the init: not dumpable, so even container root cannot read
    // its files, yet it is what runs the workload and reports its status.
    let out = w.runner(&[
        "run",
        "--init",
        &img,
        "sh",
        "-c",
        "cat /proc/1/comm; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "strata-init\n");
}

#[test]
fn workload_pid1_holds_no_host_descriptor_or_environment() {
    let w = World::new();
    let img = probe_image(&w, "probe", vec![]);
    let out = run_with_host_secrets(&w, &["run", &img, "sh", "-c", PID1_SCRIPT]);
    assert_pid1_holds_nothing_of_the_host(&out);
    // PID 1 is the shell itself here.
    assert!(stdout(&out).contains("/proc/1/exe"), "{}", stdout(&out));
}

/// Runs `runner ARGS` under `script`, which gives it a controlling terminal.
fn run_on_terminal(w: &World, args: &[&str]) -> String {
    let mut line = format!(
        "{} --root {}",
        env!("CARGO_BIN_EXE_runner"),
        w.root().display()
    );
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) is needed");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn container_never_gets_the_callers_terminal_without_t() {
    let w = World::new();
    let img = probe_image(&w, "probe", vec![]);
    let script = "/escape_probe tty; for fd in 0 1 2; do \
        if [ -t $fd ]; then echo fd$fd tty; else echo fd$fd no-tty; fi; done; \
        readlink /proc/self/fd/0";
    // The runner itself is on a terminal here.
    let out = run_on_terminal(&w, &["run", &img, "sh", "-c", script]);
    assert!(out.contains("open errno=6"), "/dev/tty opened:\n{out}");
    for fd in 0..3 {
        assert!(
            out.contains(&format!("tiocsti {fd} errno=")),
            "TIOCSTI through fd {fd} worked:\n{out}"
        );
        assert!(
            out.contains(&format!("fd{fd} no-tty")),
            "fd {fd} is a terminal:\n{out}"
        );
    }
    assert!(
        out.contains("/dev/null"),
        "stdin without -i is not /dev/null:\n{out}"
    );
    // With -i (and no -t) stdin is a pipe the runner feeds, not its terminal.
    let out = run_on_terminal(&w, &["run", "-i", &img, "sh", "-c", script]);
    assert!(out.contains("open errno=6"), "{out}");
    assert!(out.contains("fd0 no-tty"), "{out}");
    assert!(
        out.contains("pipe:["),
        "stdin with -i is not a pipe:\n{out}"
    );
    // With -t the container has a terminal of its own, and TIOCSTI reaches
    // only that one.
    let out = run_on_terminal(&w, &["run", "-t", &img, "sh", "-c", script]);
    assert!(out.contains("open ok") && out.contains("fd0 tty"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
}

fn cap_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.starts_with("Cap"))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn cap(lines: &[(String, String)], key: &str) -> u64 {
    let v = &lines.iter().find(|(k, _)| k == key).expect(key).1;
    u64::from_str_radix(v, 16).unwrap()
}

#[test]
fn inheritable_and_ambient_capabilities_are_empty() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    const DOCKER_DEFAULT: u64 = 0xa80425fb;
    let root = cap_lines(&w.ok(&["run", &img, "cat", "/proc/self/status"]));
    assert_eq!(cap(&root, "CapInh"), 0, "{root:?}");
    assert_eq!(cap(&root, "CapAmb"), 0, "{root:?}");
    assert_eq!(cap(&root, "CapPrm"), DOCKER_DEFAULT, "{root:?}");
    assert_eq!(cap(&root, "CapEff"), DOCKER_DEFAULT, "{root:?}");
    assert_eq!(cap(&root, "CapBnd"), DOCKER_DEFAULT, "{root:?}");
    let app = cap_lines(&w.ok(&["run", "-u", "app", &img, "cat", "/proc/self/status"]));
    for key in ["CapInh", "CapAmb", "CapPrm", "CapEff"] {
        assert_eq!(cap(&app, key), 0, "{key} {app:?}");
    }
    assert_eq!(cap(&app, "CapBnd"), DOCKER_DEFAULT, "{app:?}");
}

#[test]
fn numeric_user_is_a_uid_never_a_passwd_name() {
    let w = World::new();
    // Entries named like numbers, with id 0, ahead of the real ones.
    let img = w.push_busybox(
        "numeric",
        vec![
            file(
                "etc/passwd",
                b"1000:x:0:0::/:/bin/sh\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            ),
            file("etc/group", b"1000:x:0:\nroot:x:0:\napp:x:1000:\nwheel:x:10:app\n"),
        ],
    );
    let id = |user: &str| w.ok(&["run", "-u", user, &img, "sh", "-c", "id -u; id -g"]);
    assert_eq!(id("1000"), "1000\n1000\n");
    assert_eq!(id("1000:1000"), "1000\n1000\n");
    assert_eq!(id("4242"), "4242\n0\n");
    // Names are still names.
    assert_eq!(id("app:wheel"), "1000\n10\n");
    assert_eq!(id("root"), "0\n0\n");
}

#[test]
fn symlinked_proc_sys_and_dev_still_get_real_mounts_and_touch_nothing_on_the_host() {
    let w = World::new();
    let outside = w.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let abs = |name: &str| outside.join(name).display().to_string();
    // An absolute symlink names a host path when followed outside the
    // container (the unpacker already refuses relative ones that climb out
    // of the layer); a relative one inside the rootfs moves the mount.
    let cases = [
        ("abs", abs("proc"), abs("sys"), abs("dev")),
        (
            "mixed",
            "/tmp".to_owned(),
            "tmp/x".to_owned(),
            "/../../../../../../../../../../etc".to_owned(),
        ),
    ];
    for (repo, proc_target, sys_target, dev_target) in cases {
        let img = w.push_busybox(
            repo,
            vec![
                Entry::Symlink("proc".into(), proc_target),
                Entry::Symlink("sys".into(), sys_target),
                Entry::Symlink("dev".into(), dev_target),
            ],
        );
        let out = w.ok(&[
            "run",
            &img,
            "sh",
            "-c",
            "stat -f -c %T /proc /sys /dev; stat -c %F /dev/null; head -1 /proc/self/status; \
             grep -c ' /proc/keys ' /proc/self/mountinfo",
        ]);
        assert_eq!(
            out, "proc\nsysfs\ntmpfs\ncharacter special file\nName:\thead\n1\n",
            "{repo}"
        );
    }
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "host dir touched"
    );
}

#[test]
fn pid1_asking_to_be_traced_does_not_hang_the_runner() {
    let w = World::new();
    let img = probe_image(&w, "probe", vec![]);
    for init in [false, true] {
        let mut args = vec!["run"];
        if init {
            args.push("--init");
        }
        args.extend([img.as_str(), "/escape_probe", "traceme", "3"]);
        let out = runner_within(&w, &args, Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(3), "init={init}: {}", stderr(&out));
    }
}

#[test]
fn tmpfs_takes_dockers_flag_options() {
    let w = World::new();
    let img = probe_image(&w, "probe", vec![]);
    let script = "cp /bin/busybox /t1/true && /t1/true && echo t1 exec; \
        cp /bin/busybox /t2/true && /t2/true 2>/dev/null || echo t2 noexec; \
        cp /bin/busybox /t3/true && /t3/true && echo t3 exec; \
        grep -E ' /t[0-9] ' /proc/self/mountinfo | cut -d' ' -f5,6,10 | sort";
    let out = w.ok(&[
        "run",
        "--tmpfs",
        "/t1:exec",
        "--tmpfs",
        "/t2:noexec,nosuid",
        "--tmpfs",
        "/t3:rw,exec,size=2m",
        &img,
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["t1 exec", "t2 noexec", "t3 exec"], "{out}");
    assert_eq!(lines[3], "/t1 rw,nosuid,nodev,relatime rw", "{out}");
    assert_eq!(lines[4], "/t2 rw,nosuid,nodev,noexec,relatime rw", "{out}");
    assert_eq!(
        lines[5], "/t3 rw,nosuid,nodev,relatime rw,size=2048k",
        "{out}"
    );
    let bad = w.runner(&["run", "--tmpfs", "/t:bogus", &img, "true"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(stderr(&bad).contains("bogus"), "{}", stderr(&bad));
}

#[test]
fn supplementary_groups_from_etc_group_are_applied() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    for user in ["app", "1000"] {
        let groups = w.ok(&["run", "-u", user, &img, "id", "-G"]);
        assert_eq!(groups, "1000 10\n", "-u {user}");
    }
    // An explicit group replaces them, as in Docker.
    assert_eq!(w.ok(&["run", "-u", "app:app", &img, "id", "-G"]), "1000\n");
    // Root keeps no group of the runner's.
    assert_eq!(w.ok(&["run", &img, "id", "-G"]), "0\n");
    assert_eq!(w.ok(&["run", "--userns", &img, "id", "-G"]), "0\n");
}

#[test]
fn invalid_container_names_are_refused() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    for bad in ["a", "-x", "a b", "../etc", "x/y", "name;rm"] {
        let out = w.runner(&["run", &format!("--name={bad}"), &img, "true"]);
        assert_eq!(out.status.code(), Some(125), "--name {bad:?}");
        assert!(
            stderr(&out).contains("Invalid container name"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
    w.ok(&["run", "--name", "web-1.a_b", &img, "true"]);
}

#[test]
fn working_directory_through_a_dangling_symlink_is_created_inside_the_rootfs() {
    let w = World::new();
    let outside = w.dir.path().join("outside-work");
    let img = w.push_busybox(
        "dangling",
        vec![
            Entry::Symlink("work".into(), "/data/work".into()),
            Entry::Symlink("escape".into(), outside.display().to_string()),
        ],
    );
    assert_eq!(w.ok(&["run", "-w", "/work", &img, "pwd"]), "/data/work\n");
    let out = w.ok(&[
        "run",
        "-w",
        "/work/sub",
        &img,
        "sh",
        "-c",
        "ls -d /data/work/sub",
    ]);
    assert_eq!(out, "/data/work/sub\n");
    w.ok(&["run", "-w", "/escape", &img, "true"]);
    assert!(
        !outside.exists(),
        "the working directory was made on the host"
    );
}

#[test]
fn sys_fs_cgroup_shows_only_the_containers_own_cgroup_read_only() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
        cat /sys/fs/cgroup/pids/pids.max; \
        ls /sys/fs/cgroup/memory | grep -c strata; \
        echo 1 > /sys/fs/cgroup/pids/pids.max 2>/dev/null || echo read-only; \
        mkdir /sys/fs/cgroup/x 2>/dev/null || echo tmpfs read-only";
    let out = w.ok(&[
        "run",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        &img,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        out,
        format!("{}\n50\n0\nread-only\ntmpfs read-only\n", 64 << 20)
    );
}
