//! What the container cannot do or see: limits, seccomp, namespaces, masked
//! paths, capabilities, user namespaces, devices and networking modes.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
