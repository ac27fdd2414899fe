//! Security regression tests, host side: what a hostile local user, or a
//! host that cannot enforce part of the policy, could do. One test per attack.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::harness::*;

/// `nobody`, with no supplementary groups.
const NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// Runs `argv` as `nobody` (util-linux `setpriv`).
fn as_nobody(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(NOBODY)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) is needed")
}

/// The attack: `nobody` runs a set-uid-root file it found under the state
/// root. It must not get that far: the path is unreachable (EACCES), and in
/// no case does the program run with euid 0.
fn assert_nobody_cannot_exec(path: &Path) {
    let meta = fs::metadata(path).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o4755),
        "{} is the set-uid-root file of the attack",
        path.display()
    );
    // Through a shell: setpriv itself still holds root's capabilities at
    // its own execve (they go only then), so it is not what nobody could do.
    let out = as_nobody(&["/bin/sh", "-c", "exec \"$0\" euid", path.to_str().unwrap()]);
    assert!(
        !stdout(&out).contains("euid=0"),
        "nobody became root through {}",
        path.display()
    );
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "exec of {} should fail with EACCES: {}",
        path.display(),
        stderr(&out)
    );
}

/// A world whose temp dir other users may walk, so that only the state
/// root's own permissions stand between them and its contents.
fn walkable_world() -> World {
    let w = World::new();
    fs::set_permissions(w.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    w
}

/// A running container; SIGKILLed on drop if the test failed midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn other_users_cannot_reach_setuid_files_of_layers_or_of_a_containers_upper_dir() {
    let w = walkable_world();
    let probe = sysprobe();
    let img = w.push_busybox(
        "suid",
        vec![
            Entry::File("sysprobe".into(), probe.clone(), 0o755),
            Entry::File("suid-probe".into(), probe, 0o4755),
        ],
    );
    w.ok(&["pull", &img]);
    let root = w.root();
    for dir in [
        root.clone(),
        root.join("layers"),
        root.join("containers"),
        root.join("store"),
        root.join("tmp"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    // A set-uid-root file that came from a layer.
    let layer = w.layer_dirs().pop().expect("an unpacked layer");
    assert_nobody_cannot_exec(&layer.join("suid-probe"));
    // One that root inside a running container made in its upper dir.
    let script = "busybox cp /sysprobe /tmp/x && busybox chmod 4755 /tmp/x && echo ready; \
                  trap 'exit 0' TERM; sleep 60 & wait";
    let container = Running(started(w.cmd(&["run", &img, "sh", "-c", script])));
    let uppers: Vec<PathBuf> = fs::read_dir(root.join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("upper/tmp/x"))
        .collect();
    assert_eq!(uppers.len(), 1, "one running container");
    assert_nobody_cannot_exec(&uppers[0]);
    // nobody cannot even list what is there.
    let out = as_nobody(&["/bin/ls", root.join("containers").to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    unsafe { libc::kill(container.0.id() as i32, libc::SIGTERM) };
    let mut container = container;
    assert_eq!(container.0.wait().unwrap().code(), Some(0));
}

#[test]
fn a_state_root_other_users_can_enter_is_refused_with_the_chmod_to_run() {
    let w = World::new();
    let root = w.root();
    // As an older runner left it.
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let out = w.runner(&["images"]);
    assert_eq!(out.status.code(), Some(125));
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains(&format!("run `chmod 700 {}`", root.display())),
        "{message}"
    );
    assert_eq!(mode(&root), 0o755, "refused, not silently changed");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    w.ok(&["images"]);
}

/// Runs the runner in a private mount namespace in which the cgroup v1
/// `devices` hierarchy is hidden under an empty tmpfs (the host's stays).
fn run_without_devices_hierarchy(w: &World, args: &[&str]) -> Output {
    assert!(
        Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists(),
        "this test needs a cgroup v1 host with the devices hierarchy mounted"
    );
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs none /sys/fs/cgroup/devices && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_runner"))
        .arg("--root")
        .arg(w.root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux) is needed")
}

#[test]
fn no_device_cgroup_refuses_to_run_unless_explicitly_opted_out() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let out = run_without_devices_hierarchy(&w, &["run", &img, "echo", "ran"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("device allow-list cannot be enforced")
            && stderr(&out).contains("--unsafe-no-device-cgroup"),
        "{}",
        stderr(&out)
    );
    let containers = w.root().join("containers");
    assert_eq!(
        fs::read_dir(&containers).unwrap().count(),
        0,
        "nothing left"
    );
    let out = run_without_devices_hierarchy(
        &w,
        &["run", "--unsafe-no-device-cgroup", &img, "echo", "ran"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn default_seccomp_refuses_io_uring_and_af_alg_and_says_enosys_for_newer_syscalls() {
    let w = World::new();
    let img = w.push_busybox(
        "probe",
        vec![Entry::File("sysprobe".into(), sysprobe(), 0o755)],
    );
    let probe = |extra: &[&str], args: &[&str]| -> String {
        let mut argv = vec!["run"];
        argv.extend(extra);
        argv.extend([img.as_str(), "/sysprobe"]);
        argv.extend(args);
        w.ok(&argv).trim().to_owned()
    };
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    // The kernel has what the profile refuses: the profile is what refuses.
    assert_eq!(probe(&unconfined, &["io_uring_setup"]), "io_uring_setup ok");
    assert_eq!(probe(&unconfined, &["nr", "452"]), "nr 452 errno=14");
    assert_eq!(probe(&unconfined, &["nr", "462"]), "nr 462 ok");
    assert_eq!(probe(&unconfined, &["nr32", "452"]), "nr32 452 errno=22");
    assert_ne!(probe(&unconfined, &["af_alg"]), "af_alg errno=1");
    for (args, expected) in [
        (&["io_uring_setup"][..], "io_uring_setup errno=1"),
        (&["io_uring_enter"], "io_uring_enter errno=1"),
        (&["io_uring_register"], "io_uring_register errno=1"),
        (&["af_alg"], "af_alg errno=1"),
        // Known to the profile and denied: EPERM still.
        (&["keyctl"], "keyctl errno=1"),
        // fchmodat2, mseal, and a number no kernel has: newer than the profile.
        (&["nr", "452"], "nr 452 errno=38"),
        (&["nr", "462"], "nr 462 errno=38"),
        (&["nr", "999"], "nr 999 errno=38"),
        // The i386 ABI has a filter block of its own.
        (&["nr32", "452"], "nr32 452 errno=38"),
        (&["nr32", "999"], "nr32 999 errno=38"),
    ] {
        assert_eq!(probe(&[], args), expected);
    }
    // name_to_handle_at is allowed, as in Docker since 24.0.3.
    assert_eq!(
        probe(&[], &["name_to_handle_at"]),
        probe(&unconfined, &["name_to_handle_at"])
    );
    // A runc bundle carries the same rules, and runc enforces them (adding
    // its own ENOSYS for syscalls newer than the rules name).
    let bundle = w.dir.path().join("bundle");
    let script = "/sysprobe io_uring_setup; /sysprobe af_alg; /sysprobe nr 452";
    w.ok(&["bundle", &img, bundle.to_str().unwrap(), "sh", "-c", script]);
    assert_eq!(mode(&bundle.join("rootfs")), 0o700);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let rules = config["linux"]["seccomp"]["syscalls"].as_array().unwrap();
    let named = |n: &str| {
        rules
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|x| x == n))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(named("io_uring_setup").is_empty());
    let socket: Vec<(u64, String)> = named("socket")
        .iter()
        .map(|r| {
            let a = &r["args"][0];
            (
                a["value"].as_u64().unwrap(),
                a["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        socket,
        [
            (38, "SCMP_CMP_LT".to_owned()),
            (39, "SCMP_CMP_EQ".to_owned()),
            (40, "SCMP_CMP_GT".to_owned())
        ]
    );
    let name = format!("strata-seccomp-{}", std::process::id());
    let out = runc_run(&w, &bundle, &name);
    assert_eq!(
        stdout(&out),
        "io_uring_setup errno=1\naf_alg errno=1\nnr 452 errno=38\n"
    );
}
