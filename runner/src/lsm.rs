//! AppArmor and SELinux, where the host has them: the profile or label a
//! container process runs under, applied to the program it execs.
//!
//! - **AppArmor** (enabled when `/sys/module/apparmor/parameters/enabled` says
//!   `Y`): containers run under `strata-default`, a profile equivalent to
//!   Docker's `docker-default` ([`default_profile`]: no mounts, no writes to
//!   most of `/proc` and `/sys`, nothing of `/proc/kcore`, `sysrq-trigger`,
//!   `/sys/firmware` or `/sys/kernel/security`; signals and ptrace only among
//!   the container's own processes). The runner loads it with the host's
//!   `apparmor_parser` when the kernel does not list it yet.
//!   `--security-opt apparmor=PROFILE` names another loaded profile,
//!   `apparmor=unconfined` none.
//! - **SELinux** (enforcing when `/sys/fs/selinux/enforce` says `1`): each
//!   container gets `container_t` with two MCS categories of its own, as
//!   podman does, so containers cannot reach each other's files; its root
//!   filesystem is mounted with the matching `container_file_t` context.
//!   `--security-opt label=disable` turns it off, `label=type:T` and
//!   `label=level:L` change the parts.
//!
//! The process label is set by writing `/proc/self/attr/.../exec` just
//! before the process execs (the kernel applies it at that exec), after
//! `pivot_root`, so it is the container's own procfs that takes it.

use std::path::Path;

/// The name of the AppArmor profile containers run under by default.
pub const DEFAULT_PROFILE: &str = "strata-default";

/// What confines a container's processes besides namespaces, capabilities,
/// seccomp and Landlock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// AppArmor profile to exec into, if AppArmor is enabled and not turned off.
    pub apparmor: Option<String>,
    /// SELinux process label (`user:role:type:level`), if SELinux enforces.
    pub selinux: Option<Label>,
}

/// An SELinux label split into what `--security-opt label=` can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// Process type (`container_t`).
    pub process_type: String,
    /// MLS/MCS level (`s0:c12,c345`).
    pub level: String,
}

impl Label {
    /// The label of the container's processes.
    pub fn process(&self) -> String {
        format!("system_u:system_r:{}:{}", self.process_type, self.level)
    }

    /// The context its root filesystem is mounted with.
    pub fn file(&self) -> String {
        format!("system_u:object_r:container_file_t:{}", self.level)
    }
}

/// The `--security-opt` keys this module owns.
pub fn owns(key: &str) -> bool {
    matches!(key, "apparmor" | "label")
}

/// The confinement for a container with these `apparmor=` / `label=`
/// options (`opts`, as `(key, value)`), on a host with `host`'s LSMs, and
/// `random` to pick the MCS categories. An unknown value is `Err(option)`.
pub fn confinement(opts: &[(&str, &str)], host: Host, random: u64) -> Result<Confinement, String> {
    let mut apparmor = host.apparmor.then(|| DEFAULT_PROFILE.to_owned());
    let mut label = host.selinux.then(|| Label {
        process_type: "container_t".into(),
        level: mcs_level(random),
    });
    for (key, value) in opts {
        match (*key, value.split_once(':')) {
            ("apparmor", _) if *value == "unconfined" => apparmor = None,
            ("apparmor", _) if valid_name(value) => {
                apparmor = host.apparmor.then(|| (*value).to_owned())
            }
            ("label", None) if *value == "disable" => label = None,
            ("label", Some(("type", t))) if valid_name(t) => {
                if let Some(l) = label.as_mut() {
                    l.process_type = t.to_owned();
                }
            }
            ("label", Some(("level", l))) if valid_level(l) => {
                if let Some(label) = label.as_mut() {
                    label.level = l.to_owned();
                }
            }
            _ => return Err(format!("{key}={value}")),
        }
    }
    Ok(Confinement {
        apparmor,
        selinux: label,
    })
}

/// Which LSMs the host enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Host {
    /// AppArmor is enabled.
    pub apparmor: bool,
    /// SELinux is enforcing.
    pub selinux: bool,
}

impl Host {
    /// What this host has, read from `/sys`.
    pub fn detect() -> Host {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Host {
            apparmor: read("/sys/module/apparmor/parameters/enabled").trim() == "Y",
            selinux: read("/sys/fs/selinux/enforce").trim() == "1",
        }
    }

    /// `runner info`'s line.
    pub fn describe(self) -> &'static str {
        match (self.apparmor, self.selinux) {
            (false, false) => "none active (neither AppArmor nor SELinux)",
            (true, false) => "AppArmor (profile strata-default)",
            (false, true) => "SELinux (container_t, MCS categories per container)",
            (true, true) => "AppArmor and SELinux",
        }
    }
}

/// Two distinct MCS categories out of 1024, lower first: `s0:cA,cB`.
fn mcs_level(random: u64) -> String {
    let a = (random % 1024) as u32;
    let mut b = ((random >> 10) % 1023) as u32;
    if b >= a {
        b += 1;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    format!("s0:c{lo},c{hi}")
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn valid_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":,.-".contains(&b))
}

/// Makes sure the kernel has `strata-default` loaded (runner side, before
/// the container starts), loading [`default_profile`] with the host's
/// `apparmor_parser` when it is missing.
pub fn ensure_default_profile() -> std::io::Result<()> {
    let loaded = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').next() == Some(DEFAULT_PROFILE));
    if loaded {
        return Ok(());
    }
    use std::io::Write;
    let mut parser = std::process::Command::new("apparmor_parser")
        .arg("-Kr")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("AppArmor is enabled but apparmor_parser cannot run ({e}): install apparmor, or run with --security-opt apparmor=unconfined"),
            )
        })?;
    parser
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(default_profile().as_bytes())?;
    let status = parser.wait()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "apparmor_parser could not load {DEFAULT_PROFILE} ({status})"
        )));
    }
    Ok(())
}

/// Child side, just before exec: asks the kernel to apply `c` at the exec.
pub(crate) fn apply_on_exec(c: &Confinement) -> std::io::Result<()> {
    if let Some(profile) = &c.apparmor {
        write_attr(&["apparmor/exec", "exec"], &format!("exec {profile}"))?;
    }
    if let Some(label) = &c.selinux {
        write_attr(&["exec"], &label.process())?;
    }
    Ok(())
}

/// Writes `value` to the first of `/proc/self/attr/<names>` that exists
/// (the per-LSM directory on kernels that have it, the shared file before).
fn write_attr(names: &[&str], value: &str) -> std::io::Result<()> {
    let attr = Path::new("/proc/self/attr");
    let path = names
        .iter()
        .map(|n| attr.join(n))
        .find(|p| p.exists())
        .unwrap_or_else(|| attr.join(names[names.len() - 1]));
    std::fs::write(&path, value)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The AppArmor profile `strata-default`, equivalent to Docker's
/// `docker-default`.
pub fn default_profile() -> String {
    format!(
        r#"#include <tunables/global>

profile {DEFAULT_PROFILE} flags=(attach_disconnected,mediate_deleted) {{
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,

  # Signals from the host (unconfined), and among the container's processes.
  signal (receive) peer=unconfined,
  signal (send,receive) peer={DEFAULT_PROFILE},

  # /proc: nothing directly in it is writable, nor anything outside
  # /proc/<pid>/ and /proc/sys/kernel/shm*.
  deny @{{PROC}}/* w,
  deny @{{PROC}}/{{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}}/** w,
  deny @{{PROC}}/sys/[^k]** w,
  deny @{{PROC}}/sys/kernel/{{?,??,[^s][^h][^m]**}} w,
  deny @{{PROC}}/sysrq-trigger rwklx,
  deny @{{PROC}}/kcore rwklx,

  deny mount,

  # /sys: read-only but for the container's cgroups; some of it not even readable.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,

  # ps and ptrace among the container's own processes.
  ptrace (trace,read,tracedby,readby) peer={DEFAULT_PROFILE},
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Host = Host {
        apparmor: true,
        selinux: true,
    };

    #[test]
    fn the_default_profile_is_dockers_policy_under_our_name() {
        let p = default_profile();
        assert!(p.starts_with("#include <tunables/global>\n\nprofile strata-default flags=(attach_disconnected,mediate_deleted) {\n"));
        for rule in [
            "  deny mount,\n",
            "  deny @{PROC}/* w,\n",
            "  deny @{PROC}/sysrq-trigger rwklx,\n",
            "  deny @{PROC}/kcore rwklx,\n",
            "  deny /sys/firmware/** rwklx,\n",
            "  deny /sys/kernel/security/** rwklx,\n",
            "  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,\n",
            "  signal (send,receive) peer=strata-default,\n",
            "  ptrace (trace,read,tracedby,readby) peer=strata-default,\n",
        ] {
            assert!(p.contains(rule), "missing {rule:?} in\n{p}");
        }
        assert_eq!(p.matches('{').count(), p.matches('}').count(), "{p}");
        assert!(p.trim_end().ends_with('}'));
    }

    /// The profile is checked by the real parser (Debian's `apparmor`, which
    /// scripts/install-deps.sh installs); `-Q` skips the kernel load, so it
    /// runs on hosts without AppArmor too. A broken profile must fail it.
    #[test]
    fn apparmor_parser_accepts_the_default_profile() {
        let parse = |text: &str| {
            use std::io::Write;
            let mut p = std::process::Command::new("apparmor_parser")
                .args(["-Q", "-K"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("apparmor_parser (Debian's apparmor, scripts/install-deps.sh) is needed");
            p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = p.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (ok, err) = parse(&default_profile());
        assert!(ok, "apparmor_parser refused strata-default: {err}");
        let broken = default_profile().replace("  umount,\n", "  umount\n");
        assert!(!parse(&broken).0, "the parser check cannot fail");
    }

    #[test]
    fn hosts_without_an_lsm_confine_nothing_and_options_change_the_parts() {
        assert_eq!(
            confinement(&[], Host::default(), 7),
            Ok(Confinement::default())
        );
        let c = confinement(&[], BOTH, 5 | (9 << 10)).unwrap();
        assert_eq!(c.apparmor.as_deref(), Some("strata-default"));
        let label = c.selinux.unwrap();
        assert_eq!(label.process(), "system_u:system_r:container_t:s0:c5,c10");
        assert_eq!(label.file(), "system_u:object_r:container_file_t:s0:c5,c10");

        let c = confinement(
            &[
                ("apparmor", "unconfined"),
                ("label", "type:spc_t"),
                ("label", "level:s0:c1,c2"),
            ],
            BOTH,
            0,
        )
        .unwrap();
        assert_eq!(c.apparmor, None);
        assert_eq!(
            c.selinux.unwrap().process(),
            "system_u:system_r:spc_t:s0:c1,c2"
        );
        let c = confinement(&[("apparmor", "my-prof"), ("label", "disable")], BOTH, 0).unwrap();
        assert_eq!((c.apparmor.as_deref(), c.selinux), (Some("my-prof"), None));
        for bad in [
            ("apparmor", "a b"),
            ("label", "level:s0;rm"),
            ("label", "user:x"),
        ] {
            assert!(confinement(&[bad], BOTH, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mcs_categories_are_two_distinct_ones_lower_first() {
        for r in [0u64, 1, 1023, 1024, u64::MAX, 0x3ff | (0x3fe << 10)] {
            let level = mcs_level(r);
            let (a, b) = level
                .strip_prefix("s0:c")
                .and_then(|s| s.split_once(",c"))
                .unwrap();
            let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(a < b && b < 1024, "{level}");
        }
    }
}
