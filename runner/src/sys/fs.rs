//! File attributes nix does not wrap: extended attributes.

use std::ffi::CStr;
use std::io;

use super::check;

/// Sets the extended attribute `name` of `path` (not following a final
/// symlink) to `value` (`lsetxattr`, no flags).
pub(crate) fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: valid NUL-terminated strings and a valid buffer for the call's duration.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc.into()).map(drop)
}
