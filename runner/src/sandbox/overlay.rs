//! The overlay filesystem that stacks the image's layers under the
//! container's upper dir, at `<state>/rootfs`. It lives only in the child's
//! mount namespace, so nothing stays mounted on the host if the runner dies.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::child::{ChildError, Context};
use super::Launch;
use crate::sys;

pub(super) fn mount_overlay(
    launch: &Launch<'_>,
    layers: &[PathBuf],
    rootfs: &Path,
) -> Result<(), ChildError> {
    let upper = launch.state_dir.join("upper");
    let work = launch.state_dir.join("work");
    // Paths relative to the common layers dir keep the mount options short.
    let base = layers
        .first()
        .and_then(|l| l.parent())
        .and_then(|p| p.parent())
        .ok_or_else(|| ChildError(125, "image has no layers".into()))?;
    let lowers: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| {
            l.strip_prefix(base)
                .unwrap_or(l)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    // In a user namespace (--userns, or rootless mode) overlayfs keeps its
    // marks in `user.overlay.*`: `trusted.*` needs root in the initial one.
    let userxattr = launch.spec.userns.is_some() || crate::rootless::active();
    let mut options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if userxattr {
        options.push_str(",userxattr");
    }
    if let Some(label) = &launch.spec.confinement.selinux {
        options.push_str(&format!(",context=\"{}\"", label.file()));
    }
    nix::unistd::chdir(base).ctx(|| format!("chdir {}", base.display()))?;
    // mount(2) takes the options in one page; past that, the new mount API
    // adds the layers one by one (`lowerdir+`, Linux 6.8+).
    //
    // `volatile` (Linux 5.10+): the upper dir is thrown away when the
    // container ends, so the overlay need not sync it. Without it, the
    // unmount at the end of every container syncs the whole filesystem under
    // the upper dir, waiting for every dirty page on it (right after a pull,
    // the freshly unpacked layers: hundreds of milliseconds).
    let overlay = |options: &str| {
        mount(
            Some("overlay"),
            rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options),
        )
    };
    let mounted = if options.len() < 4000 {
        match overlay(&format!("{options},volatile")) {
            Err(nix::errno::Errno::EINVAL) => overlay(&options),
            other => other,
        }
        .map_err(io::Error::from)
    } else {
        mount_overlay_layer_by_layer(&lowers, &upper, &work, userxattr, rootfs)
    };
    mounted.ctx(|| format!("mount overlay ({} layers)", lowers.len()))?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// Mounts an overlay with fsopen/fsconfig/fsmount, one `lowerdir+` per layer
/// (top first, paths relative to the current directory).
fn mount_overlay_layer_by_layer(
    lowers: &[String],
    upper: &Path,
    work: &Path,
    userxattr: bool,
    rootfs: &Path,
) -> io::Result<()> {
    let c = |s: &[u8]| CString::new(s).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
    let fs_fd = sys::mount::fsopen(c"overlay")?;
    let set = |key: &std::ffi::CStr, value: Option<&CString>| {
        sys::mount::fsconfig_set(&fs_fd, key, value.map(CString::as_c_str))
    };
    for lower in lowers {
        set(c"lowerdir+", Some(&c(lower.as_bytes())?))?;
    }
    set(c"upperdir", Some(&c(upper.as_os_str().as_encoded_bytes())?))?;
    set(c"workdir", Some(&c(work.as_os_str().as_encoded_bytes())?))?;
    if userxattr {
        set(c"userxattr", None)?;
    }
    set(c"volatile", None)?;
    let mnt = sys::mount::fsmount(&fs_fd)?;
    let target = c(rootfs.as_os_str().as_encoded_bytes())?;
    sys::mount::move_mount(mnt.as_raw_fd(), &target)
}
