//! `runner info`: what this host offers the runner (root or rootless, cgroup version,
//! seccomp, Landlock, overlayfs), where its state lives, and which registries it has
//! credentials for (names only, never a secret). Reads; creates nothing.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cgroup::Cgroup;
use crate::image::auth::{self, AuthFile};
use crate::paths::Root;

/// What `runner info` prints.
#[derive(Debug)]
pub struct Info {
    /// The runner's version and commit.
    pub version: &'static str,
    /// The state root.
    pub root: PathBuf,
    /// Rootless mode (not root in the initial user namespace).
    pub rootless: bool,
    /// "v1", "v1 (hybrid...)", "v2" or "none".
    pub cgroup: String,
    /// Whether the kernel offers seccomp filters.
    pub seccomp: bool,
    /// The Landlock ABI the kernel offers, and the one the runner's rules use.
    pub landlock: (u32, u32),
    /// The AppArmor / SELinux the host enforces.
    pub lsm: crate::lsm::Host,
    /// Whether the kernel lists overlayfs.
    pub overlay: bool,
    /// (registry, file it is stored in), for every stored credential.
    pub registries: Vec<(String, PathBuf)>,
}

/// Gathers the facts for state root `root`.
pub fn gather(root: &Path) -> Info {
    let cgroups = Path::new("/sys/fs/cgroup");
    let cgroup = match Cgroup::version(cgroups) {
        Some(2) => "v2".to_owned(),
        Some(_) if cgroups.join("unified/cgroup.controllers").exists() => {
            "v1 (hybrid: a cgroup2 tree at /sys/fs/cgroup/unified)".to_owned()
        }
        Some(_) => "v1".to_owned(),
        None => "none found at /sys/fs/cgroup".to_owned(),
    };
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let mut files = vec![Root::new(root).auth_file()];
    files.extend(auth::docker_config_file());
    let mut registries = Vec::new();
    for file in files {
        // An unreadable file lists nothing; pulls report it.
        if let Ok(auth) = AuthFile::load(&file) {
            registries.extend(auth.hosts().into_iter().map(|h| (h, file.clone())));
        }
    }
    Info {
        version: crate::VERSION,
        root: root.to_owned(),
        rootless: crate::rootless::active(),
        cgroup,
        seccomp: status.lines().any(|l| l.starts_with("Seccomp_filters:"))
            || status.lines().any(|l| l.starts_with("Seccomp:")),
        landlock: (
            crate::sandbox::landlock::kernel_abi(),
            crate::sandbox::landlock::abi_in_use(),
        ),
        lsm: crate::lsm::Host::detect(),
        overlay: filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("overlay")),
        registries,
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "version:    {}", self.version)?;
        writeln!(f, "state root: {}", self.root.display())?;
        if self.rootless {
            writeln!(
                f,
                "mode:       rootless (a user namespace from /etc/subuid and /etc/subgid)"
            )?;
        } else {
            writeln!(f, "mode:       root")?;
        }
        writeln!(f, "cgroup:     {}", self.cgroup)?;
        writeln!(f, "seccomp:    {}", yes(self.seccomp))?;
        match self.landlock {
            (0, _) => writeln!(
                f,
                "landlock:   no (the kernel offers none: containers run without it)"
            )?,
            (kernel, used) => writeln!(
                f,
                "landlock:   ABI {used} in use (the kernel offers {kernel})"
            )?,
        }
        writeln!(f, "lsm:        {}", self.lsm.describe())?;
        writeln!(f, "overlayfs:  {}", yes(self.overlay))?;
        if self.registries.is_empty() {
            writeln!(f, "registries: none logged in")?;
        } else {
            writeln!(f, "registries:")?;
            for (host, file) in &self.registries {
                writeln!(f, "  {host} ({})", file.display())?;
            }
        }
        Ok(())
    }
}
