//! The child side of the sandbox: everything the container process does
//! between `clone` and `exec`, in the order the [module doc](super) gives.
//! A failure here never returns to the runner's code: it is written to the
//! error pipe as `<exit code>\n<message>` and the child exits.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};

use super::init::Init;
use super::stdio::ChildStreams;
use super::{overlay, rootfs, Launch};
use crate::spec::Network;
use crate::sys;
use crate::{caps, seccomp};

/// What the child gets from the parent: the launch and its ends of the
/// pipes, the layer socket and the stdio.
pub(super) struct ChildContext<'a> {
    pub(super) launch: &'a Launch<'a>,
    pub(super) sync_r: RawFd,
    pub(super) err_w: RawFd,
    pub(super) layer_fds: RawFd,
    /// Send this process's network namespace on `layer_fds` first (for the
    /// parent's network hook).
    pub(super) send_netns: bool,
    pub(super) streams: ChildStreams,
    pub(super) console: Option<&'a Path>,
    /// The runner's `/proc/self/cgroup`.
    pub(super) runner_cgroups: &'a str,
}

/// A failure inside the child: exit code and message for the parent.
pub(super) struct ChildError(pub(super) i32, pub(super) String);

pub(super) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ChildError>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ChildError> {
        self.map_err(|e| ChildError(125, format!("{}: {e}", what())))
    }
}

/// The child's entry point: sets up and execs the container, or reports why
/// it could not.
pub(super) fn main(ctx: &ChildContext<'_>) -> isize {
    let ChildError(code, message) = match child_setup(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let report = format!("{code}\n{message}");
    sys::proc::report_and_exit(ctx.err_w, report.as_bytes(), code)
}

pub(super) enum Never {}

/// Wait for the runner's go (this process is in its cgroup then, and its id
/// maps are written), and take a cgroup namespace rooted at that cgroup.
/// Returns the hierarchies the container has a cgroup of its own in.
fn join_cgroup(ctx: &ChildContext<'_>) -> Result<Vec<String>, ChildError> {
    let mut go = [0u8; 1];
    if nix::unistd::read(ctx.sync_r, &mut go) != Ok(1) {
        return Err(ChildError(
            125,
            "runner went away before the container started".into(),
        ));
    }
    let own = rootfs::own_cgroups(ctx.runner_cgroups);
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare cgroup namespace".into())?;
    Ok(own)
}

fn child_setup(ctx: &ChildContext<'_>) -> Result<Never, ChildError> {
    let launch = ctx.launch;
    let spec = launch.spec;
    // Die with the runner.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Until it execs, this process is a copy of the runner: nobody may read
    // its memory or descriptors through /proc (exec makes the workload
    // dumpable again; `--init`'s PID 1 clears it itself).
    sys::proc::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    // Not dumpable, so only real root could open /proc/<pid>/ns/net from
    // outside: the parent's network hook gets the namespace from here.
    if ctx.send_netns {
        let netns = fs::File::open("/proc/self/ns/net").ctx(|| "open /proc/self/ns/net".into())?;
        sys::fd::send_fd(ctx.layer_fds, netns.as_raw_fd())
            .ctx(|| "send the network namespace to the runner".into())?;
    }
    // In a user namespace nothing works before the runner wrote the id maps,
    // so wait for its go first. Otherwise build the root filesystem while the
    // runner puts this process in its cgroup (on cgroup v1 that write waits
    // for an RCU grace period, ~10 ms here), and wait just before pivoting:
    // nothing of the image runs before then.
    let early = spec.userns.is_none();
    let mut own_cgroups = Vec::new();
    if !early {
        own_cgroups = join_cgroup(ctx)?;
    }
    // With --userns this process becomes an unprivileged host uid below,
    // which cannot walk the private state root (see `paths`): open the state
    // dir first, still as the runner's uid (its owner) and in this mount
    // namespace, and reach it through the descriptor from then on.
    let (_state_fd, state_dir, userns_launch, userns_ctx);
    let ctx = if spec.userns.is_some() {
        let dir = fs::File::open(launch.state_dir)
            .ctx(|| format!("open {}", launch.state_dir.display()))?;
        state_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        _state_fd = dir;
        userns_launch = Launch {
            state_dir: &state_dir,
            ..*launch
        };
        userns_ctx = ChildContext {
            launch: &userns_launch,
            ..*ctx
        };
        &userns_ctx
    } else {
        ctx
    };
    let launch = ctx.launch;
    if spec.userns.is_some() {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setresgid in user namespace".into())?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setresuid in user namespace".into())?;
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "make mounts private".into())?;
    let rootfs = launch.state_dir.join("rootfs");
    let lowers = if spec.userns.is_some() {
        attach_idmapped_layers(ctx)?
    } else {
        launch.layers.to_vec()
    };
    overlay::mount_overlay(launch, &lowers, &rootfs)?;
    rootfs::mount_volumes(spec, &rootfs)?;
    rootfs::mount_secrets(spec, launch.state_dir, &rootfs)?;
    rootfs::mount_system(spec, &rootfs, ctx.console)?;
    rootfs::mount_etc_files(launch.state_dir, &rootfs)?;
    if spec.read_only {
        rootfs::remount_ro(&rootfs, MsFlags::empty()).ctx(|| "remount root read-only".into())?;
    }
    nix::unistd::sethostname(&spec.hostname).ctx(|| "sethostname".into())?;
    if spec.network != Network::Host {
        sys::net::loopback_up().ctx(|| "bring up lo".into())?;
    }
    if early {
        own_cgroups = join_cgroup(ctx)?;
    }
    rootfs::mount_cgroups(&rootfs, &own_cgroups)?;
    rootfs::pivot_into(&rootfs)?;
    become_workload(
        spec,
        &ctx.streams,
        launch.seccomp_bpf,
        ctx.err_w,
        spec.preserve_fds,
    )
}

/// The last steps of every container process, PID 1 or one `exec` starts,
/// once it is inside the container's namespaces, root and cgroup: its
/// stdio and session, user and working directory, environment; every
/// descriptor but the error pipe closed (and the `preserved` ones, 3 up,
/// that PID 1 is given on purpose); Landlock; bounding set, groups, user,
/// capabilities, `no_new_privs` and seccomp; then exec.
pub(super) fn become_workload(
    spec: &crate::spec::ContainerSpec,
    streams: &ChildStreams,
    seccomp_bpf: Option<&[u8]>,
    err_w: RawFd,
    preserved: u32,
) -> Result<Never, ChildError> {
    streams.install()?;
    let user = crate::spec::user::resolve_user(&spec.user, Path::new("/"))
        .map_err(|e| ChildError(125, e.to_string()))?;
    enter_working_dir(&spec.cwd, &user)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home.clone().unwrap_or_else(|| "/".into())
        ));
    }
    let argv = resolve_argv(&spec.args, &env)?;
    // Nothing of the runner's may enter the container: close (not merely
    // mark) every descriptor but the error pipe, which is close-on-exec,
    // and those the user passed on with --preserve-fds.
    sys::fd::close_fds_except(3 + preserved as RawFd, err_w)
        .ctx(|| "close inherited descriptors".into())?;
    sys::fd::set_cloexec(3..3 + preserved as RawFd, false)
        .ctx(|| "pass on the --preserve-fds descriptors".into())?;
    let init = if spec.init {
        Some(Init::load().ctx(|| "load the init program".into())?)
    } else {
        None
    };
    // Still privileged in its user namespace, so no no_new_privs is needed;
    // before seccomp, whose profile need not allow Landlock's calls.
    if spec.landlock {
        super::landlock::restrict(spec.read_only).ctx(|| "Landlock".into())?;
    }
    crate::lsm::apply_on_exec(&spec.confinement).ctx(|| "AppArmor/SELinux label".into())?;

    if let (Some(bpf), false) = (seccomp_bpf, spec.no_new_privileges) {
        seccomp::load(bpf).ctx(|| "seccomp".into())?;
    }
    caps::limit_bounding(&spec.capabilities).ctx(|| "capability bounding set".into())?;
    // Keep permitted caps across the uid switch.
    let _ = nix::sys::prctl::set_keepcaps(true);
    // Always: without it a --userns container would keep the runner's
    // supplementary groups (host gid 0 among them).
    let gids: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&gids).ctx(|| "setgroups".into())?;
    nix::unistd::setresgid(
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
        Gid::from_raw(user.gid),
    )
    .ctx(|| format!("setgid {}", user.gid))?;
    nix::unistd::setresuid(
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
        Uid::from_raw(user.uid),
    )
    .ctx(|| format!("setuid {}", user.uid))?;
    let _ = nix::sys::prctl::set_keepcaps(false);
    let effective: &[caps::Capability] = if user.uid == 0 {
        &spec.capabilities
    } else {
        &[]
    };
    caps::set_process_caps(effective).ctx(|| "capset".into())?;
    if spec.no_new_privileges {
        nix::sys::prctl::set_no_new_privs()
            .map_err(io::Error::from)
            .ctx(|| "no_new_privs".into())?;
        if let Some(bpf) = seccomp_bpf {
            seccomp::load(bpf).ctx(|| "seccomp".into())?;
        }
    }
    exec(&argv, &env, init.as_ref(), err_w)
}

/// Enters the working directory, creating it (owned by the user) when
/// missing. Runs after `pivot_root`, so every symlink resolves inside the
/// container; one that dangles is followed to where it points, which is
/// created, as Docker does.
fn enter_working_dir(cwd: &str, user: &crate::spec::user::ResolvedUser) -> Result<(), ChildError> {
    let resolved = crate::fsutil::secure_join(Path::new("/"), Path::new(cwd))
        .ctx(|| format!("resolve working directory {cwd}"))?;
    if !resolved.is_dir() {
        fs::create_dir_all(&resolved).ctx(|| format!("create working directory {cwd}"))?;
        let _ = nix::unistd::chown(
            &resolved,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        );
    }
    nix::unistd::chdir(&resolved).ctx(|| format!("chdir to {cwd}"))
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, ChildError> {
    CString::new(s.as_ref()).map_err(|_| ChildError(125, "NUL byte in argument".into()))
}

/// Looks argv[0] up in the container's PATH.
fn resolve_argv(args: &[String], env: &[String]) -> Result<Vec<CString>, ChildError> {
    let first = &args[0];
    let path = if first.contains('/') {
        first.clone()
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::spec::DEFAULT_PATH);
        search
            .split(':')
            .map(|d| format!("{d}/{first}"))
            .find(|p| {
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| {
                ChildError(
                    127,
                    format!("exec: {first:?}: executable file not found in $PATH"),
                )
            })?
    };
    let mut out = vec![cstring(&path)?];
    for a in &args[1..] {
        out.push(cstring(a)?);
    }
    out.push(cstring(first)?);
    Ok(out)
}

/// Execs the workload, or under `--init` the init program with the
/// workload's path and argv. Only a failure returns: it is reported on the
/// error pipe (closed by a successful exec), and the child exits.
fn exec(argv: &[CString], env: &[String], init: Option<&Init>, err_w: RawFd) -> ! {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::all()), None);
    // Ignored signals stay ignored across exec: the runner ignores SIGPIPE
    // (Rust does) and may have inherited more from its own parent.
    sys::proc::reset_signal_dispositions();
    let env: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    // argv holds [resolved path, args[1..]..., original argv0]
    let path = &argv[0];
    let mut args: Vec<&CStr> = vec![&argv[argv.len() - 1]];
    args.extend(argv[1..argv.len() - 1].iter().map(CString::as_c_str));
    let (what, e) = match init {
        Some(init) => ("exec strata-init for", init.exec(path, &args, &env)),
        None => (
            "exec",
            io::Error::from(nix::unistd::execve(path, &args, &env).unwrap_err()),
        ),
    };
    let code = if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    let report = format!("{code}\n{what} {}: {e}", path.to_string_lossy());
    sys::proc::report_and_exit(err_w, report.as_bytes(), code)
}

/// Receives the id-mapped layer mounts from the parent and attaches them
/// under `<state>/lower/<n>`; returns those paths, base first.
fn attach_idmapped_layers(ctx: &ChildContext<'_>) -> Result<Vec<PathBuf>, ChildError> {
    let launch = ctx.launch;
    let mut fds: Vec<RawFd> = Vec::new();
    while fds.len() < launch.layers.len() {
        let mut byte = [0u8; 1];
        let mut iov = [io::IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; 64]);
        let msg = nix::sys::socket::recvmsg::<()>(
            ctx.layer_fds,
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::empty(),
        )
        .ctx(|| "receive id-mapped layers".into())?;
        let before = fds.len();
        for c in msg.cmsgs().ctx(|| "receive id-mapped layers".into())? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(received) = c {
                fds.extend(received);
            }
        }
        if fds.len() == before {
            return Err(ChildError(125, "runner sent no id-mapped layers".into()));
        }
    }
    let mut paths = Vec::new();
    for (i, fd) in fds.iter().enumerate() {
        let target = launch.state_dir.join("lower").join(i.to_string());
        let c_target = cstring(target.as_os_str().as_encoded_bytes())?;
        sys::mount::move_mount(*fd, &c_target)
            .map_err(|e| ChildError(125, format!("attach id-mapped layer {i}: {e}")))?;
        let _ = nix::unistd::close(*fd);
        paths.push(target);
    }
    Ok(paths)
}
