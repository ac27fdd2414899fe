//! `/etc/subuid` and `/etc/subgid`: the subordinate id ranges a user may
//! map into a user namespace (`name:start:count` or `uid:start:count` per
//! line, see subuid(5)). The first range of the user's with at least one id
//! is used, capped at [`MAX_IDS`].

use std::path::{Path, PathBuf};

/// Ids mapped beyond container root (container ids 1..=65536), as Docker
/// and podman map by default.
pub const MAX_IDS: u32 = 65536;

/// Errors finding a user's subordinate range.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file has no range for the user.
    #[error(
        "rootless mode: {file} has no range for user {user} (uid {uid}); as root, run \
         `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`"
    )]
    NoRange {
        /// `/etc/subuid` or `/etc/subgid`.
        file: PathBuf,
        /// The user's name (or uid when it has none).
        user: String,
        /// The user's uid.
        uid: u32,
    },
}

/// A subordinate id range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First host id.
    pub start: u32,
    /// How many ids (at most [`MAX_IDS`]).
    pub count: u32,
}

/// The range of the user `name` (uid `uid`) in the subid file `text`.
pub fn parse(text: &str, name: &str, uid: u32) -> Option<Range> {
    let uid = uid.to_string();
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if owner != name && owner != uid {
            return None;
        }
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (count > 0).then(|| Range {
            start,
            count: count.min(MAX_IDS),
        })
    })
}

/// The range of user `name` (uid `uid`) in `file`; a missing file is a file
/// without the range.
pub fn lookup(file: &Path, name: &str, uid: u32) -> Result<Range, Error> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    parse(&text, name, uid).ok_or_else(|| Error::NoRange {
        file: file.to_owned(),
        user: name.to_owned(),
        uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_by_name_or_uid_capped_at_65536_ids() {
        let text = "alice:100000:65536\n# no\nbob:200000:0\n1002:300000:1000000\n";
        assert_eq!(
            parse(text, "alice", 1001),
            Some(Range {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(parse(text, "bob", 1000), None, "an empty range is none");
        assert_eq!(
            parse(text, "carol", 1002),
            Some(Range {
                start: 300000,
                count: MAX_IDS
            })
        );
        let err = lookup(Path::new("/nonexistent/subuid"), "dave", 7).unwrap_err();
        assert!(
            err.to_string().contains("usermod --add-subuids") && err.to_string().contains("dave"),
            "{err}"
        );
    }
}
