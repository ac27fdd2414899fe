//! Resolving a container's user (`-u`, the image's `User`) against the
//! image's own `/etc/passwd` and `/etc/group`, Docker's (runc's) way. Used
//! inside the sandbox after `pivot_root`, and by `runner bundle` on the
//! unpacked rootfs.

use std::path::Path;

use super::{Error, Result};

/// A user resolved against the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplementary gids.
    pub groups: Vec<u32>,
    /// Home directory, if known.
    pub home: Option<String>,
}

/// Reads `/etc/passwd`-style records of the image under `root`; the path is
/// resolved as if `root` were `/`, so an image symlink cannot make the runner
/// read a host file.
fn read_db(root: &Path, file: &str) -> Vec<Vec<String>> {
    crate::fsutil::secure_join(root, Path::new(file))
        .and_then(std::fs::read_to_string)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

/// Resolves `-u` against the files under `root` the way Docker (runc's
/// `GetExecUser`) does:
/// - a numeric user is a uid, never a name: its passwd entry, if any, only
///   supplies the primary group, the home directory and the name whose
///   `/etc/group` memberships become the supplementary groups;
/// - a name must have a passwd entry;
/// - an explicit group (numeric, or a name looked up in `/etc/group`) is the
///   primary group, and then there are no supplementary groups;
/// - otherwise every group that lists the user's name is supplementary.
pub fn resolve_user(spec: &str, root: &Path) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (if spec.is_empty() { "0" } else { spec }, None),
    };
    let passwd = read_db(root, "etc/passwd");
    let groups = read_db(root, "etc/group");
    let numeric_uid = user.parse::<u32>().ok();
    let entry = passwd
        .iter()
        .filter(|e| e.len() >= 4)
        .find(|e| match numeric_uid {
            Some(uid) => e[2].parse::<u32>() == Ok(uid),
            None => e[0] == user,
        });
    let (uid, mut gid, name, home) = match (numeric_uid, entry) {
        (_, Some(e)) => (
            e[2].parse().unwrap_or(0),
            e[3].parse().unwrap_or(0),
            Some(e[0].clone()),
            e.get(5).cloned().filter(|h| !h.is_empty()),
        ),
        (Some(uid), None) => (uid, 0, None, None),
        (None, None) => {
            return Err(Error::UnknownUser {
                user: user.to_owned(),
                file: "/etc/passwd",
            })
        }
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.len() >= 3 && e[0] == g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| Error::UnknownUser {
                    user: g.to_owned(),
                    file: "/etc/group",
                })?,
        };
    }
    let mut supplementary: Vec<u32> = match &name {
        Some(n) if group.is_none() => groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == n))
            .filter_map(|e| e[2].parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    supplementary.retain(|g| *g != gid);
    supplementary.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_through_passwd_and_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        let u = resolve_user("app", dir.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1000, 1000, vec![10]));
        assert_eq!(resolve_user("app:wheel", dir.path()).unwrap().gid, 10);
        assert_eq!(resolve_user("4242:7", dir.path()).unwrap().uid, 4242);
        assert!(resolve_user("nobody-here", dir.path()).is_err());
        // A numeric user is its uid: its entry gives group, home and memberships.
        let u = resolve_user("1000", dir.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 1000, vec![10]));
    }

    #[test]
    fn numeric_user_is_never_a_passwd_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "1000:x:0:0::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "1000:x:0:\napp:x:1000:\n").unwrap();
        let u = resolve_user("1000", dir.path()).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = resolve_user("1000:1000", dir.path()).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(resolve_user("2000", dir.path()).unwrap().uid, 2000);
    }

    #[test]
    fn an_image_symlink_cannot_make_the_lookup_read_a_host_file() {
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        std::fs::write(&host_passwd, "hostonly:x:0:0::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&host_passwd, dir.path().join("etc/passwd")).unwrap();
        assert!(resolve_user("hostonly", dir.path()).is_err());
    }
}
