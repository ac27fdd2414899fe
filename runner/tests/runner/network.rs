//! Networking: `--network bridge`, `-p`/`-P`, user networks, clean-up and
//! bad input. Every test runs the runner inside a network namespace of its
//! own (`ip netns add`, entered with `nsenter --net=`, not `ip netns exec`,
//! which remounts /sys and hides the cgroup hierarchy), so no bridge, veth
//! or nft rule ever reaches the machine's own namespace; the image is
//! pulled first, outside, from the test's registry on 127.0.0.1. The
//! namespace (and everything in it) is deleted on drop, after the test's
//! containers, even when the test fails.

use crate::harness::*;
use std::fs;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// A network namespace of the test's own, with `lo` up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!(
            "strata-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run_ok(
            Command::new("nsenter")
                .arg(ns.arg())
                .args(["ip", "link", "set", "lo", "up"]),
        );
        ns
    }

    fn arg(&self) -> String {
        format!("--net=/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A test world whose runner runs inside its own namespace. On drop: every
/// container removed (`rm -f` inside the namespace, then SIGKILL of any
/// monitor still recorded), then the namespace deleted.
struct Net {
    w: World,
    ns: Netns,
    img: String,
}

impl Net {
    /// A world with a busybox image serving `/www` (EXPOSE 80), pulled outside.
    fn new() -> Net {
        let w = World::new();
        let layer = busybox_layer(
            Compression::Gzip,
            vec![
                Entry::Dir("www/"),
                file("www/index.html", b"hello from strata\n"),
            ],
        );
        let config = serde_json::json!({"config": {
            "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "ExposedPorts": {"80/tcp": {}},
        }});
        push_image(&w.reg, "web", "latest", &[&layer], config);
        let img = w.image("web");
        w.ok(&["pull", &img]);
        Net {
            w,
            ns: Netns::new(),
            img,
        }
    }

    /// The runner inside the namespace.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(self.ns.arg())
            .arg(env!("CARGO_BIN_EXE_runner"))
            .arg("--root")
            .arg(self.w.root())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn runner(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run runner")
    }

    fn ok(&self, args: &[&str]) -> String {
        stdout(&run_ok(&mut self.cmd(args)))
    }

    /// A shell command on the namespace's "host" side.
    fn host(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg(self.ns.arg())
            .args(["/bin/busybox", "sh", "-c", script])
            .output()
            .expect("nsenter")
    }

    /// `run -d` of busybox httpd on port 80; returns the id.
    fn web(&self, extra: &[&str]) -> String {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            &self.img, "busybox", "httpd", "-f", "-p", "80", "-h", "/www",
        ]);
        self.ok(&args).trim().to_owned()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    fn leases(&self) -> usize {
        let path = self.w.root().join("networks/state.json");
        let v: serde_json::Value = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        v["leases"].as_array().map_or(0, Vec::len)
    }

    /// Interfaces in the namespace.
    fn links(&self) -> String {
        stdout(&self.host("ip -o link show"))
    }

    /// nft tables in the namespace.
    fn tables(&self) -> String {
        stdout(&run_ok(
            Command::new("nsenter")
                .arg(self.ns.arg())
                .args(["nft", "list", "ruleset"]),
        ))
    }

    /// `wget` from the namespace's host side, retried for up to 10 s while
    /// the server starts listening (under `timeout`: Debian's static
    /// busybox `wget -T` crashes).
    fn fetch(&self, url: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.host(&format!("busybox timeout 5 busybox wget -q -O - {url}"));
            if out.status.success() {
                return stdout(&out);
            }
            if Instant::now() > deadline {
                let diag = self.host("ip addr; ip route; nft list ruleset");
                eprintln!(
                    "wget {url} failed: {}\n{}{}",
                    stderr(&out),
                    stdout(&diag),
                    stderr(&diag)
                );
                for e in fs::read_dir(self.w.root().join("containers"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let id = e.file_name().to_string_lossy().into_owned();
                    let x = self.runner(&[
                        "exec",
                        &id,
                        "sh",
                        "-c",
                        "cat /proc/net/dev /proc/net/route /proc/net/fib_trie; busybox ip addr; ps",
                    ]);
                    eprintln!("in {id}: {}{}", stdout(&x), stderr(&x));
                    eprintln!(
                        "monitor.log: {}",
                        fs::read_to_string(e.path().join("monitor.log")).unwrap_or_default()
                    );
                }
                return stdout(&out);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let dir = self.w.root().join("containers");
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = self.runner(&["rm", "-f", &id]);
            let state: serde_json::Value = fs::read(e.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let Some(pid) = state["owner_pid"].as_i64().filter(|p| *p > 0) {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

fn first_line(o: &Output) -> String {
    stderr(o).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn bridge_host_to_container_and_container_to_container() {
    let n = Net::new();
    n.web(&["--name", "web", "--network", "bridge"]);
    let s = n.inspect("web");
    let ip = s["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ip.starts_with("10.89."), "{s}");
    assert_eq!(s["NetworkSettings"]["Gateway"], "10.89.0.1");
    assert_eq!(
        s["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
        ip.as_str()
    );
    assert_eq!(s["HostConfig"]["NetworkMode"], "bridge");
    assert!(
        s["NetworkSettings"]["MacAddress"]
            .as_str()
            .unwrap()
            .starts_with("02:42:"),
        "{s}"
    );
    assert!(n.links().contains("strata0"), "{}", n.links());
    // Host to container.
    assert_eq!(n.fetch(&format!("http://{ip}/")), "hello from strata\n");
    // Container to container, and the files a bridged container gets.
    let script = format!(
        "busybox timeout 10 busybox wget -q -O - http://{ip}/ && cat /etc/hostname /etc/hosts /etc/resolv.conf /proc/net/route"
    );
    let out = n.ok(&[
        "run",
        "--network",
        "bridge",
        "--hostname",
        "client",
        &n.img,
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.starts_with("hello from strata\nclient\n"), "{out}");
    assert!(
        out.contains("\tclient\n") && out.contains("\tweb "),
        "hosts: {out}"
    );
    assert!(out.contains("nameserver"), "resolv.conf: {out}");
    // The default route: destination 00000000 via eth0.
    assert!(
        out.lines().any(|l| l.starts_with("eth0\t00000000")),
        "route: {out}"
    );
    assert_eq!(n.leases(), 1, "the foreground container's lease is gone");
    n.ok(&["rm", "-f", "web"]);
    assert_eq!(n.leases(), 0);
    assert!(!n.links().contains("vs"), "veth left: {}", n.links());
    assert!(!n.tables().contains("dnat"), "{}", n.tables());
}

#[test]
fn published_ports_reach_the_service() {
    let n = Net::new();
    // -p alone implies the bridge.
    n.web(&[
        "--name",
        "web",
        "-p",
        "127.0.0.1:18080:80",
        "-p",
        "18081:80",
    ]);
    assert_eq!(n.fetch("http://127.0.0.1:18080/"), "hello from strata\n");
    assert_eq!(n.fetch("http://127.0.0.1:18081/"), "hello from strata\n");
    // Through another address of the host: the bridge's gateway.
    assert_eq!(n.fetch("http://10.89.0.1:18081/"), "hello from strata\n");
    let ports = n.ok(&["port", "web"]);
    assert!(ports.contains("80/tcp -> 127.0.0.1:18080"), "{ports}");
    assert!(ports.contains("80/tcp -> 0.0.0.0:18081"), "{ports}");
    // ps shows them as Docker does.
    let ps = n.ok(&["ps", "--filter", "name=web"]);
    assert!(
        ps.contains("127.0.0.1:18080->80/tcp, 0.0.0.0:18081->80/tcp"),
        "{ps}"
    );
    let s = n.inspect("web");
    let bound = &s["NetworkSettings"]["Ports"]["80/tcp"];
    assert_eq!(bound[0]["HostIp"], "127.0.0.1", "{s}");
    assert_eq!(bound[0]["HostPort"], "18080", "{s}");
    // A port already published: refused, one line, nothing half set up.
    let links = n.links().lines().count();
    let out = n.runner(&["run", "-d", "-p", "18080:80", &n.img, "true"]);
    assert!(!out.status.success());
    assert!(first_line(&out).contains("18080"), "{}", stderr(&out));
    assert!(
        first_line(&out).contains("already in use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(n.leases(), 1);
    assert_eq!(n.links().lines().count(), links, "{}", n.links());
    // -P publishes the EXPOSEd port on a free host port.
    n.web(&["--name", "any", "-P"]);
    let line = n.ok(&["port", "any", "80"]);
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    assert!(port.parse::<u16>().is_ok(), "{line}");
    assert_eq!(
        n.fetch(&format!("http://127.0.0.1:{port}/")),
        "hello from strata\n"
    );
    n.ok(&["rm", "-f", "web", "any"]);
    assert_eq!(n.leases(), 0);
    assert!(!n.tables().contains("dnat"), "{}", n.tables());
    assert!(!n.links().contains("vs"), "{}", n.links());
}

#[test]
fn user_networks_by_name_and_isolated() {
    let n = Net::new();
    n.ok(&["network", "create", "--subnet", "10.123.0.0/24", "front"]);
    n.ok(&["network", "create", "back"]);
    let ls = n.ok(&["network", "ls"]);
    assert!(
        ls.contains("front") && ls.contains("10.123.0.0/24") && ls.contains("back"),
        "{ls}"
    );
    n.web(&["--name", "web", "--network", "front"]);
    let ip = n.inspect("web")["NetworkSettings"]["Networks"]["front"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ip, "10.123.0.2");
    let fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do busybox timeout 5 busybox wget -q -O - http://$0/ && exit 0; sleep 0.3; done; exit 1";
    // Same network: by name.
    let out = n.runner(&[
        "run",
        "--network",
        "front",
        &n.img,
        "sh",
        "-c",
        fetch,
        "web",
    ]);
    assert_eq!(stdout(&out), "hello from strata\n", "{}", stderr(&out));
    // Another network: neither the name nor the address (--init: as PID 1
    // the wget would ignore timeout's SIGTERM).
    let no_reach = "busybox timeout 3 busybox wget -q -O - http://$0/";
    for target in ["web", ip.as_str()] {
        let out = n.runner(&[
            "run",
            "--init",
            "--network",
            "back",
            &n.img,
            "sh",
            "-c",
            no_reach,
            target,
        ]);
        assert!(
            !out.status.success(),
            "reached {target} from another network: {}",
            stdout(&out)
        );
    }
    let inspect = n.ok(&["network", "inspect", "front"]);
    assert!(
        inspect.contains("\"IPv4Address\": \"10.123.0.2/24\""),
        "{inspect}"
    );
    // In use: refused.
    let out = n.runner(&["network", "rm", "front"]);
    assert!(!out.status.success());
    assert!(first_line(&out).contains("in use"), "{}", stderr(&out));
    n.ok(&["rm", "-f", "web"]);
    n.ok(&["network", "rm", "front", "back"]);
    let links = n.links();
    assert!(
        !links.contains("strata1") && !links.contains("strata2") && !links.contains("vs"),
        "{links}"
    );
    let tables = n.tables();
    assert!(
        !tables.contains("strata1") && !tables.contains("strata2"),
        "{tables}"
    );
    assert_eq!(n.leases(), 0);
}

#[test]
fn bad_network_input_is_one_line_and_leaves_nothing() {
    let n = Net::new();
    n.ok(&["network", "create", "--subnet", "10.124.0.0/24", "taken"]);
    let before = (n.links(), n.tables());
    let cases: &[(&[&str], &str)] = &[
        (&["run", "-p", "0:80", &n.img, "true"], "invalid port"),
        (&["run", "-p", "80/sctp", &n.img, "true"], "invalid port"),
        (
            &["run", "-p", "1.2.3:80:80", &n.img, "true"],
            "invalid port",
        ),
        (&["run", "--network", "nosuch", &n.img, "true"], "not found"),
        (
            &["run", "-d", "--network", "nosuch", &n.img, "true"],
            "not found",
        ),
        (
            &["run", "--network", "none", "-p", "80", &n.img, "true"],
            "needs --network",
        ),
        (
            &["network", "create", "--subnet", "10.124.0.128/25", "x"],
            "overlaps",
        ),
        (
            &["network", "create", "--subnet", "10.89.0.0/24", "x"],
            "overlaps",
        ),
        (
            &["network", "create", "--subnet", "300.1.1.0/24", "x"],
            "invalid subnet",
        ),
        (
            &["network", "create", "--subnet", "10.125.0.1/24", "x"],
            "host bits",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.125.0.0/24",
                "--gateway",
                "10.126.0.1",
                "x",
            ],
            "invalid gateway",
        ),
        (&["network", "create", "taken"], "already exists"),
        (&["network", "create", "bridge"], "reserved"),
        (&["network", "rm", "nosuch"], "not found"),
        (&["network", "rm", "bridge"], "cannot be removed"),
    ];
    for (args, want) in cases {
        let out = n.runner(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?}, got {err}");
    }
    assert_eq!(
        (n.links(), n.tables()),
        before,
        "something was left half set up"
    );
    assert_eq!(n.leases(), 0);
    assert!(!n.ok(&["network", "ls"]).contains(" x "));
}

#[test]
fn crash_leftovers_are_removed_by_the_next_command() {
    let n = Net::new();
    n.web(&["--name", "web", "-p", "18090:80"]);
    assert_eq!(n.fetch("http://127.0.0.1:18090/"), "hello from strata\n");
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(
            n.w.root()
                .join("containers")
                .join(n.inspect("web")["Id"].as_str().unwrap())
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = state["owner_pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::metadata(format!("/proc/{monitor}")).is_ok() {
        assert!(Instant::now() < deadline, "monitor {monitor} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        n.leases(),
        1,
        "the dead monitor could not release its lease"
    );
    n.ok(&["ps", "-a"]);
    assert_eq!(n.leases(), 0);
    assert!(!n.links().contains("vs"), "{}", n.links());
    assert!(!n.tables().contains("dnat"), "{}", n.tables());
}

#[test]
fn userns_containers_get_bridge_ports_and_names() {
    let n = Net::new();
    n.ok(&["network", "create", "back"]);
    // A user namespace of its own: published port, by name from a
    // container with another mapping, and the /etc files it owns.
    n.web(&[
        "--name",
        "api",
        "--userns",
        "--network",
        "back",
        "-p",
        "127.0.0.1:18082:80",
    ]);
    assert_eq!(n.fetch("http://127.0.0.1:18082/"), "hello from strata\n");
    let fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do busybox timeout 5 busybox wget -q -O - http://api/ && break; sleep 0.3; done; stat -c %u:%g /etc/hosts /etc/hostname /etc/resolv.conf";
    let out = n.runner(&[
        "run",
        "--rm",
        "--userns=200000",
        "--network",
        "back",
        &n.img,
        "sh",
        "-c",
        fetch,
    ]);
    assert_eq!(
        stdout(&out),
        "hello from strata\n0:0\n0:0\n0:0\n",
        "{}",
        stderr(&out)
    );
    // With the host's network the container's root is not root of that
    // namespace: ports below 1024 are refused (as under podman), others bind.
    let out = n.runner(&[
        "run",
        "--rm",
        "--userns",
        "--network",
        "host",
        &n.img,
        "sh",
        "-c",
        "busybox httpd -p 80 -h /www; busybox httpd -p 18083 -h /www && echo bound",
    ]);
    assert!(
        stderr(&out).contains("Permission denied") && stdout(&out) == "bound\n",
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    n.ok(&["rm", "-f", "api"]);
    n.ok(&["network", "rm", "back"]);
    assert_eq!(n.leases(), 0);
    assert!(!n.links().contains("vs"), "{}", n.links());
    assert!(!n.tables().contains("dnat"), "{}", n.tables());
}
