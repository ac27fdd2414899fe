//! The fully resolved description of one container: what to execute, as
//! whom, with which mounts, limits and confinement. It is built from the
//! image config plus the command-line options, and consumed by the sandbox
//! (for `runner run`) or turned into an OCI runtime spec (for `runner bundle`).
//! It sits below both `container` (which builds it) and `sandbox` (which runs
//! it), so neither reaches into the other.
//!
//! Here: the spec and its parts (volumes, tmpfs, names, network, id maps,
//! each parsed from its option syntax), and argv and environment from the
//! image config, Docker's way; [`user`]: `-u` resolved against the image's
//! passwd and group files.

pub mod user;

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::caps::Capability;
use crate::cgroup::Limits;
use crate::image::oci::ExecConfig;
use crate::seccomp::Profile;

/// Errors building or resolving a container spec.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing to execute: no entrypoint, cmd or command-line command.
    #[error("no command: the image has no Entrypoint or Cmd, and none was given")]
    NoCommand,
    /// A `-v` option is malformed.
    #[error("invalid volume {0:?}: expected HOST:CONTAINER[:ro|rw] with absolute paths")]
    InvalidVolume(String),
    /// A `--tmpfs` option is malformed.
    #[error("invalid tmpfs {0:?}: expected an absolute CONTAINER path[:options]")]
    InvalidTmpfs(String),
    /// A `--tmpfs` option word is neither a mount flag nor `key=value` data.
    #[error("invalid tmpfs option {option:?} in {tmpfs:?}: expected a mount flag (ro, rw, exec, noexec, suid, nosuid, dev, nodev, sync, async, ...) or key=value (size=64m, mode=1777, ...)")]
    InvalidTmpfsOption {
        /// The whole `--tmpfs` value.
        tmpfs: String,
        /// The word not understood.
        option: String,
    },
    /// A `--name` is not a valid container name.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// A signal name or number is unknown.
    #[error("invalid signal {0:?}")]
    InvalidSignal(String),
    /// The user could not be resolved in the image.
    #[error("unable to find user {user}: no matching entries in {file}")]
    UnknownUser {
        /// The user or group asked for.
        user: String,
        /// The file searched.
        file: &'static str,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Host path.
    pub host: PathBuf,
    /// Path inside the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
    /// The (device, inode) the host path must still have: it was listed
    /// earlier by a build and someone else may have swapped it since
    /// ([`crate::fsutil::open_same`]; the bind is made through the checked
    /// descriptor).
    pub listed: Option<(u64, u64)>,
}

impl std::str::FromStr for Volume {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidVolume(s.to_owned());
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            _ => return Err(bad()),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            return Err(bad());
        }
        Ok(Volume {
            host: host.into(),
            container: container.into(),
            read_only,
            listed: None,
        })
    }
}

/// Mount flags a `--tmpfs` may name, as Docker accepts them: the word, then
/// whether it clears (true) or sets (false) the `MS_*` bit.
const MOUNT_FLAGS: [(&str, bool, libc::c_ulong); 20] = [
    ("defaults", false, 0),
    ("ro", false, libc::MS_RDONLY),
    ("rw", true, libc::MS_RDONLY),
    ("suid", true, libc::MS_NOSUID),
    ("nosuid", false, libc::MS_NOSUID),
    ("dev", true, libc::MS_NODEV),
    ("nodev", false, libc::MS_NODEV),
    ("exec", true, libc::MS_NOEXEC),
    ("noexec", false, libc::MS_NOEXEC),
    ("sync", false, libc::MS_SYNCHRONOUS),
    ("async", true, libc::MS_SYNCHRONOUS),
    ("dirsync", false, libc::MS_DIRSYNC),
    ("atime", true, libc::MS_NOATIME),
    ("noatime", false, libc::MS_NOATIME),
    ("diratime", true, libc::MS_NODIRATIME),
    ("nodiratime", false, libc::MS_NODIRATIME),
    ("relatime", false, libc::MS_RELATIME),
    ("norelatime", true, libc::MS_RELATIME),
    ("strictatime", false, libc::MS_STRICTATIME),
    ("nostrictatime", true, libc::MS_STRICTATIME),
];

/// A tmpfs mount: `PATH[:OPTIONS]`, where OPTIONS is a comma-separated list
/// of mount flags (`ro`, `exec`, `nosuid`, ...; see `MOUNT_FLAGS`) and
/// tmpfs data (`size=64m`, `mode=1777`, ...), as Docker takes them. Flags
/// apply in order over the defaults `nosuid,nodev,noexec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    /// Path inside the container.
    pub path: PathBuf,
    /// The mount flag words, in the order given.
    pub flags: Vec<String>,
    /// The filesystem data options (`key=value`), in the order given.
    pub data: Vec<String>,
}

impl Tmpfs {
    /// The `MS_*` flags to mount with: the defaults with `flags` applied.
    pub fn mount_flags(&self) -> libc::c_ulong {
        let mut bits = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        for word in &self.flags {
            if let Some((_, clear, bit)) = MOUNT_FLAGS.iter().find(|(n, _, _)| n == word) {
                if *clear {
                    bits &= !bit;
                } else {
                    bits |= bit;
                }
            }
        }
        bits
    }
}

impl std::str::FromStr for Tmpfs {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (path, options) = s.split_once(':').unwrap_or((s, ""));
        if !path.starts_with('/') {
            return Err(Error::InvalidTmpfs(s.to_owned()));
        }
        let mut tmpfs = Tmpfs {
            path: path.into(),
            flags: Vec::new(),
            data: Vec::new(),
        };
        for word in options.split(',').filter(|w| !w.is_empty()) {
            if word.contains('=') {
                tmpfs.data.push(word.to_owned());
            } else if MOUNT_FLAGS.iter().any(|(n, _, _)| *n == word) {
                tmpfs.flags.push(word.to_owned());
            } else {
                return Err(Error::InvalidTmpfsOption {
                    tmpfs: s.to_owned(),
                    option: word.to_owned(),
                });
            }
        }
        Ok(tmpfs)
    }
}

/// A container name (`--name`), valid by Docker's rule:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (two characters at least).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerName(String);

impl std::str::FromStr for ContainerName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest: Vec<char> = chars.collect();
        let rest_ok = !rest.is_empty()
            && rest
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok {
            Ok(ContainerName(s.to_owned()))
        } else {
            Err(Error::InvalidName(s.to_owned()))
        }
    }
}

impl std::fmt::Display for ContainerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A new network namespace with only `lo`.
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace that the runner connects to a bridge
    /// (`crate::network`: which network and ports are in the run options).
    Bridge,
}

/// The container's user-namespace mapping (`--userns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First host id container id 0 maps to.
    pub host_start: u32,
    /// Number of ids mapped.
    pub size: u32,
}

/// A file written on a tmpfs that only the container's mount namespace
/// has, then bound read-only at `path` (`RUN --mount=type=secret`): its
/// bytes are never on disk and go with the container. Debug output leaves
/// them out.
#[derive(Clone)]
pub struct SecretFile {
    /// Path inside the container.
    pub path: PathBuf,
    /// Content.
    pub bytes: Vec<u8>,
    /// Mode.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Everything needed to start one container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container id (also its state directory name).
    pub id: String,
    /// Name given with `--name`.
    pub name: Option<ContainerName>,
    /// Hostname.
    pub hostname: String,
    /// argv, argv[0] resolved through PATH inside the container.
    pub args: Vec<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// User spec (`uid[:gid]` or `name[:group]`), resolved inside the rootfs.
    pub user: String,
    /// Capabilities kept.
    pub capabilities: Vec<Capability>,
    /// Whether `no_new_privs` is set.
    pub no_new_privileges: bool,
    /// seccomp profile, or `None` for unconfined.
    pub seccomp: Option<Profile>,
    /// Landlock rules (`sandbox::landlock`) on every container process.
    pub landlock: bool,
    /// AppArmor profile and SELinux label, where the host has them.
    pub confinement: crate::lsm::Confinement,
    /// Descriptors 3 to 3+N-1 passed on to PID 1.
    pub preserve_fds: u32,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// Files made on a tmpfs of the container's own (build secrets).
    pub secrets: Vec<SecretFile>,
    /// Network mode.
    pub network: Network,
    /// User namespace mapping, if any.
    pub userns: Option<IdMap>,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Keep stdin attached.
    pub stdin: bool,
    /// Run a reaper as PID 1.
    pub init: bool,
    /// cgroup limits.
    pub limits: Limits,
    /// Signal that asks the container to stop.
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub stop_timeout: Duration,
}

/// Docker's default PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parses `SIGTERM`, `TERM` or `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::InvalidSignal(s.to_owned()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::InvalidSignal(s.to_owned()))
}

/// argv from image Entrypoint/Cmd and command-line overrides, Docker's way:
/// `--entrypoint` replaces the entrypoint and drops the image Cmd; a command
/// on the command line replaces Cmd.
pub fn command(
    image: &ExecConfig,
    entrypoint: Option<&str>,
    cmd: &[String],
) -> Result<Vec<String>> {
    let entry: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_owned()],
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let tail: Vec<String> = if !cmd.is_empty() {
        cmd.to_vec()
    } else if entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    let argv: Vec<String> = entry.into_iter().chain(tail).collect();
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(argv)
}

/// Environment: PATH default, HOSTNAME, TERM for a tty, image Env, then `-e`
/// (a bare `KEY` copies the host's value).
pub fn environment(
    image: &ExecConfig,
    hostname: &str,
    tty: bool,
    overrides: &[String],
) -> Vec<String> {
    let mut env: Vec<String> = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_owned());
    }
    let set = |env: &mut Vec<String>, kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    for kv in image.env.iter().flatten() {
        set(&mut env, kv.clone());
    }
    for kv in overrides {
        if kv.contains('=') {
            set(&mut env, kv.clone());
        } else if let Ok(v) = std::env::var(kv) {
            set(&mut env, format!("{kv}={v}"));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entry: &[&str], cmd: &[&str]) -> ExecConfig {
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| (*x).to_owned()).collect());
        ExecConfig {
            entrypoint: v(entry),
            cmd: v(cmd),
            ..ExecConfig::default()
        }
    }

    #[test]
    fn command_follows_docker_rules() {
        let img = image(&["/entry"], &["default"]);
        assert_eq!(command(&img, None, &[]).unwrap(), ["/entry", "default"]);
        assert_eq!(command(&img, None, &["x".into()]).unwrap(), ["/entry", "x"]);
        assert_eq!(command(&img, Some("/sh"), &[]).unwrap(), ["/sh"]);
        assert!(command(&image(&[], &[]), None, &[]).is_err());
    }

    #[test]
    fn tmpfs_options_are_flags_and_data() {
        let t: Tmpfs = "/t:rw,exec,size=1m".parse().unwrap();
        assert_eq!(t.data, ["size=1m"]);
        assert_eq!(t.mount_flags(), libc::MS_NOSUID | libc::MS_NODEV);
        let t: Tmpfs = "/t:noexec,nosuid".parse().unwrap();
        assert_eq!(
            t.mount_flags(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
        );
        let t: Tmpfs = "/t".parse().unwrap();
        assert!(t.flags.is_empty() && t.data.is_empty());
        assert!("/t:bogus".parse::<Tmpfs>().is_err());
        assert!("t:exec".parse::<Tmpfs>().is_err());
    }

    #[test]
    fn container_names_follow_docker() {
        for good in ["ab", "web-1", "a.b_c", "0x"] {
            assert!(good.parse::<ContainerName>().is_ok(), "{good}");
        }
        for bad in ["", "a", "-ab", ".ab", "a b", "a/b", "ä1", "ab;rm"] {
            assert!(bad.parse::<ContainerName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_volumes_and_signals() {
        let v: Volume = "/h:/c:ro".parse().unwrap();
        assert!(v.read_only);
        assert!("rel:/c".parse::<Volume>().is_err());
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
