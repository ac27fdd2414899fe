//! Rootless networking: Debian's `slirp4netns`, a user-space network stack,
//! for the containers of an ordinary user.
//!
//! An unprivileged user can make neither a bridge nor a veth in the host's
//! network namespace. In rootless mode `--network bridge` (or `-p`, `-P`)
//! gives the container a network namespace of its own (made by the
//! sandbox's `clone`, as for `none`, so owned by the user's namespace).
//! [`plan`] picks the host ports and writes `/etc/resolv.conf`; once the
//! namespace exists (the child sends it to the runner as descriptor N),
//! [`Plan::start`] runs, in the container's state directory,
//!
//! ```text
//! slirp4netns --configure --mtu=65520 --disable-host-loopback
//!     --enable-sandbox --enable-seccomp --api-socket slirp4netns.sock
//!     --ready-fd=R --exit-fd=E --netns-type=path /proc/self/fd/N tap0
//! ```
//!
//! which opens `tap0` in the namespace (10.0.2.100/24, gateway 10.0.2.2,
//! DNS 10.0.2.3) and carries the container's traffic over ordinary sockets
//! of the user's: outbound NAT by construction. Each published port is one
//! `add_hostfwd` request on the API socket: slirp4netns listens on the host
//! address and port the user asked for (`0.0.0.0` by default, as Docker)
//! and forwards to the container's port. The socket is removed once the
//! ports are published; [`Record`] (`slirp4netns.json`) tells `ps`, `port`
//! and `inspect` what is published while slirp4netns runs.
//!
//! Lifetime: slirp4netns is a child of the process that supervises PID 1
//! (the foreground runner, or a detached container's monitor), in a process
//! group of its own so that a Ctrl-C to the runner does not reach it. It
//! gets `/dev/null`, its log, the two pipe ends and the namespace, nothing
//! else of its parent's (every other descriptor is close-on-exec). It
//! exits when the exit pipe closes, that is when [`Slirp`] is dropped or
//! its parent dies in any way; the drop also waits for it, and kills it (by
//! its pid, still unreaped) after [`EXIT_TIMEOUT`]. The container's PID 1 was cloned
//! before slirp4netns started, so it holds none of its descriptors.
//!
//! `--disable-host-loopback` is the default: without it 10.0.2.2 reaches
//! the host's 127.0.0.1, where services that trust local users listen.
//! `--network slirp4netns:allow_host_loopback=true` (podman's syntax) opts
//! in. slirp4netns also runs in a mount namespace of its own with an empty
//! root and its own seccomp filter (`--enable-sandbox`, `--enable-seccomp`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ports::{self, PortBinding};
use super::{store, Error, Request, Result};

/// The program, looked up on `PATH` (Debian's `slirp4netns` package).
pub const PROGRAM: &str = "slirp4netns";
/// The container's address on `tap0`.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
/// The gateway (and, with host loopback allowed, the host's 127.0.0.1).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// The DNS forwarder slirp4netns answers on.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The prefix length of slirp4netns's network (10.0.2.0/24).
pub const PREFIX: u8 = 24;
/// The MTU of `tap0`: the largest slirp4netns takes, the fastest.
const MTU: u32 = 65520;
/// How long slirp4netns has to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long slirp4netns has to exit once its exit pipe closes.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// File names in the container's state directory.
const SOCKET: &str = "slirp4netns.sock";
const LOG: &str = "slirp4netns.log";
const RECORD: &str = "slirp4netns.json";

fn failed(what: impl std::fmt::Display) -> Error {
    Error::Slirp(what.to_string())
}

/// What `--network` asked of slirp4netns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Let the container reach the host's 127.0.0.1 at 10.0.2.2.
    pub allow_host_loopback: bool,
}

impl Options {
    /// From the network's name: `bridge` (or `default`) with the defaults,
    /// or `slirp4netns[:allow_host_loopback=true|false]`. A user network's
    /// name is refused: it would need a bridge.
    pub fn parse(network: &str) -> Result<Options> {
        let (name, opts) = network.split_once(':').unwrap_or((network, ""));
        let mut options = Options::default();
        match name {
            "bridge" | "default" if opts.is_empty() => return Ok(options),
            PROGRAM => {}
            _ => {
                return Err(Error::Rootless(
                    format!("--network {network}"),
                    "user networks need a bridge; use --network bridge (slirp4netns), \
                     none or host"
                        .into(),
                ))
            }
        }
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            options.allow_host_loopback = match opt.split_once('=') {
                Some(("allow_host_loopback", "true")) => true,
                Some(("allow_host_loopback", "false")) => false,
                _ => {
                    return Err(Error::Rootless(
                        format!("--network {network}"),
                        format!(
                            "unknown slirp4netns option {opt:?} (allow_host_loopback=true|false)"
                        ),
                    ))
                }
            };
        }
        Ok(options)
    }
}

/// A rootless container's network, ready to start once its namespace exists.
#[derive(Debug)]
pub struct Plan {
    dir: PathBuf,
    options: Options,
    ports: Vec<PortBinding>,
}

/// The plan for a container whose state directory is `dir` (`<dir>/etc`
/// written already): its options, its host ports (a free one where none
/// was given; a taken one is refused now), its `resolv.conf`.
pub fn plan(dir: &Path, request: &Request, exposed: Vec<String>) -> Result<Plan> {
    let options = Options::parse(request.network_name())?;
    let mut specs = request.port_specs()?;
    if request.publish_all {
        specs.extend(ports::exposed(exposed));
    }
    // No leases: what another container publishes is bound, so seen as taken.
    let ports = super::bind_ports(&store::Db::default(), &specs)?;
    super::write_in_place(&dir.join("etc").join("resolv.conf"), &resolv_text())?;
    Ok(Plan {
        dir: dir.to_owned(),
        options,
        ports,
    })
}

/// The host's resolver configuration with slirp4netns's forwarder as the
/// only name server (it asks the host's, loopback ones included).
fn resolv_text() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut text = format!("nameserver {DNS}\n");
    for line in host.lines() {
        if line.split_whitespace().next() != Some("nameserver") {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// `/dev/net/tun` must be readable and writable by the user: slirp4netns
/// opens it inside the container's namespace.
fn check_tun() -> Result<()> {
    use nix::unistd::{access, AccessFlags};
    access("/dev/net/tun", AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| {
        failed(format!(
            "/dev/net/tun is not readable and writable by you ({e}); it must be mode 0666, \
             as Debian's udev makes it (a user can only attach it to namespaces of its own): \
             as root, run `chmod 0666 /dev/net/tun`, or use --network none or host"
        ))
    })
}

impl Plan {
    /// Starts slirp4netns on `netns`, the network namespace of the
    /// container's PID 1 (not yet running its command), handed down as a
    /// descriptor: a rootless runner may not open `/proc/<pid>/ns/net` of
    /// a child that is not dumpable. Waits until it has configured `tap0`,
    /// publishes the ports and records them.
    pub fn start(&self, netns: BorrowedFd<'_>) -> Result<Slirp> {
        check_tun()?;
        let socket = self.dir.join(SOCKET);
        let _ = fs::remove_file(&socket);
        let log_path = self.dir.join(LOG);
        let log =
            File::create(&log_path).map_err(|e| failed(format!("{}: {e}", log_path.display())))?;
        let err_log = log.try_clone().map_err(failed)?;
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (ready_r, ready_w) = nix::unistd::pipe2(cloexec).map_err(failed)?;
        let (exit_r, exit_w) = nix::unistd::pipe2(cloexec).map_err(failed)?;
        let handed = [ready_w.as_raw_fd(), exit_r.as_raw_fd(), netns.as_raw_fd()];
        let mut cmd = Command::new(PROGRAM);
        cmd.args(["--configure", "--enable-sandbox", "--enable-seccomp"])
            .arg(format!("--mtu={MTU}"))
            .arg(format!("--api-socket={SOCKET}"))
            .arg(format!("--ready-fd={}", handed[0]))
            .arg(format!("--exit-fd={}", handed[1]));
        if !self.options.allow_host_loopback {
            cmd.arg("--disable-host-loopback");
        }
        cmd.arg("--netns-type=path")
            .arg(format!("/proc/self/fd/{}", handed[2]))
            .arg("tap0")
            .current_dir(&self.dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0);
        let child =
            crate::sys::fd::spawn_keeping(&mut cmd, handed.to_vec()).map_err(spawn_error)?;
        drop((ready_w, exit_r));
        // From here on a failure drops `slirp`, which stops it.
        let slirp = Slirp {
            child,
            exit: Some(exit_w),
            dir: self.dir.clone(),
        };
        slirp.wait_ready(ready_r)?;
        for binding in &self.ports {
            add_hostfwd(&self.dir, binding)?;
        }
        let _ = fs::remove_file(&socket);
        let record = Record {
            pid: slirp.child.id() as i32,
            ports: self.ports.clone(),
        };
        let json = serde_json::to_vec(&record).map_err(failed)?;
        crate::fsutil::write_replace(&self.dir.join(RECORD), &json, false).map_err(failed)?;
        Ok(slirp)
    }
}

/// Why slirp4netns did not start: missing, or something else.
fn spawn_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => failed(
            "slirp4netns is not installed: as root, run `apt-get install slirp4netns`, \
             or use --network none or host",
        ),
        _ => failed(format!("starting {PROGRAM}: {e}")),
    }
}

/// A running slirp4netns: stopped and waited for when dropped.
#[derive(Debug)]
pub struct Slirp {
    child: Child,
    exit: Option<OwnedFd>,
    dir: PathBuf,
}

impl Slirp {
    /// Waits for the `1` slirp4netns writes on its ready pipe once `tap0`
    /// is up; its log says why when it exits first (the caller drops
    /// `self`, which stops it).
    fn wait_ready(&self, ready: OwnedFd) -> Result<()> {
        let readable =
            crate::sys::proc::wait_readable(&ready, Some(READY_TIMEOUT)).map_err(failed)?;
        let mut byte = [0u8; 1];
        let n = if readable {
            File::from(ready).read(&mut byte).unwrap_or(0)
        } else {
            0
        };
        if n == 1 {
            return Ok(());
        }
        let log = fs::read_to_string(self.dir.join(LOG)).unwrap_or_default();
        let said: Vec<&str> = log.lines().filter(|l| !l.starts_with("WARNING")).collect();
        let last = match said.join("; ") {
            text if text.is_empty() => "no output".to_owned(),
            text => text,
        };
        Err(failed(if readable {
            format!("{PROGRAM} exited before the network was up: {last}")
        } else {
            format!("{PROGRAM} did not bring the network up within {READY_TIMEOUT:?}: {last}")
        }))
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.dir.join(RECORD));
        // Closing the exit pipe tells it to go.
        drop(self.exit.take());
        let pid = self.child.id() as i32;
        let gone = crate::sys::proc::pidfd_open(pid)
            .and_then(|fd| crate::sys::proc::wait_readable(&fd, Some(EXIT_TIMEOUT)))
            .unwrap_or(false);
        if !gone {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = fs::remove_file(self.dir.join(SOCKET));
    }
}

/// One `add_hostfwd` request on the API socket of the slirp4netns running
/// in `dir` (reached through the directory's descriptor: a state
/// directory's path can be longer than a socket address takes).
fn add_hostfwd(dir: &Path, b: &PortBinding) -> Result<()> {
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": b.proto.as_str(),
            "host_addr": b.host_ip_text(),
            "host_port": b.host_port,
            "guest_port": b.container_port,
        },
    });
    let shown = format!("{}:{}/{}", b.host_ip_text(), b.host_port, b.proto.as_str());
    let dir_fd = File::open(dir).map_err(failed)?;
    let path = format!("/proc/self/fd/{}/{SOCKET}", dir_fd.as_raw_fd());
    let mut stream = UnixStream::connect(&path).map_err(|e| failed(format!("API socket: {e}")))?;
    stream
        .set_read_timeout(Some(READY_TIMEOUT))
        .map_err(failed)?;
    stream
        .write_all(request.to_string().as_bytes())
        .map_err(|e| failed(format!("API socket: {e}")))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer: serde_json::Value = loop {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| failed(format!("API socket: {e}")))?;
        reply.extend_from_slice(&chunk[..n]);
        match serde_json::from_slice(&reply) {
            Ok(v) => break v,
            Err(_) if n > 0 => continue,
            Err(e) => {
                return Err(failed(format!(
                    "API reply {:?}: {e}",
                    String::from_utf8_lossy(&reply)
                )))
            }
        }
    };
    match answer.get("error") {
        None => Ok(()),
        Some(e) => Err(Error::PortInUse(
            shown,
            e.get("desc")
                .and_then(|d| d.as_str())
                .unwrap_or("refused")
                .to_owned(),
        )),
    }
}

/// What a running slirp4netns publishes, in `slirp4netns.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// slirp4netns's pid.
    pub pid: i32,
    /// The published ports.
    pub ports: Vec<PortBinding>,
}

/// The record in the container state directory `dir`, if its slirp4netns
/// still runs (a crashed monitor's record is stale: its slirp4netns left
/// with it, through the exit pipe).
pub fn published(dir: &Path) -> Option<Record> {
    let record: Record = serde_json::from_slice(&fs::read(dir.join(RECORD)).ok()?).ok()?;
    let stat = fs::read_to_string(format!("/proc/{}/stat", record.pid)).ok()?;
    let (name, rest) = stat.split_once(" (")?.1.rsplit_once(')')?;
    let alive = !rest.trim_start().starts_with(['Z', 'X']);
    (name == PROGRAM && alive).then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_in_rootless_mode() {
        assert_eq!(Options::parse("bridge").unwrap(), Options::default());
        assert_eq!(Options::parse("slirp4netns").unwrap(), Options::default());
        let open = Options::parse("slirp4netns:allow_host_loopback=true").unwrap();
        assert!(open.allow_host_loopback);
        let err = Options::parse("mynet").unwrap_err().to_string();
        assert!(err.contains("not available in rootless mode"), "{err}");
        let err = Options::parse("slirp4netns:mtu=1500")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown slirp4netns option"), "{err}");
    }

    #[test]
    fn resolv_conf_names_the_forwarder_only() {
        let text = resolv_text();
        assert!(text.starts_with("nameserver 10.0.2.3\n"), "{text}");
        assert_eq!(text.matches("nameserver").count(), 1, "{text}");
    }
}
