//! `registry htpasswd FILE USER`: add or replace a user's bcrypt entry.
//!
//! At a terminal the password is prompted for (`Password: `, then
//! `Retype password: `), read without echo, and a mismatch changes nothing;
//! otherwise it is all of stdin less its final newline, as scripts pipe it. Uses no
//! other module of the crate.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg, Termios};

/// Why the user could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user name is empty or holds a `:`.
    #[error("user names must be non-empty and free of ':'")]
    BadUser,
    /// No password was given.
    #[error("empty password")]
    Empty,
    /// The two passwords typed differ.
    #[error("the passwords do not match; nothing changed")]
    Mismatch,
    /// The password cannot be read (or the terminal set up for it).
    #[error("cannot read the password")]
    Read(#[source] std::io::Error),
    /// The htpasswd file exists but cannot be read (it is left as it is).
    #[error("cannot read {}; nothing changed", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The htpasswd file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The password cannot be hashed.
    #[error(transparent)]
    Hash(#[from] bcrypt::BcryptError),
}

/// Add `user` to `file`, the password read as [`read_password`] does.
pub fn run(file: &Path, user: &str) -> Result<(), Error> {
    if user.is_empty() || user.contains(':') {
        return Err(Error::BadUser);
    }
    let password = read_password()?;
    add_user(file, user, &password)
}

/// The password: prompted for twice at a terminal, else all of stdin.
pub fn read_password() -> Result<String, Error> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let tty = File::options()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(Error::Read)?;
        let first = prompt(&tty, "Password: ").map_err(Error::Read)?;
        let again = prompt(&tty, "Retype password: ").map_err(Error::Read)?;
        if first != again {
            return Err(Error::Mismatch);
        }
        first
    } else {
        let mut all = String::new();
        stdin.lock().read_to_string(&mut all).map_err(Error::Read)?;
        all
    };
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(Error::Empty);
    }
    Ok(password)
}

/// Echo turned off while a password is typed; restored on drop (also when
/// reading fails).
struct NoEcho<'a> {
    tty: &'a File,
    saved: Termios,
}

impl<'a> NoEcho<'a> {
    fn new(tty: &'a File) -> std::io::Result<NoEcho<'a>> {
        let saved = tcgetattr(tty)?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        // Still echo the Enter, so the next prompt starts on a new line.
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(tty, SetArg::TCSAFLUSH, &quiet)?;
        Ok(NoEcho { tty, saved })
    }
}

impl Drop for NoEcho<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// Write `text` to the terminal and read one line without echo.
fn prompt(mut tty: &File, text: &str) -> std::io::Result<String> {
    // Echo off before the prompt shows: TCSAFLUSH drops what was typed
    // before it, and nothing typed after the prompt may be echoed.
    let _quiet = NoEcho::new(tty)?;
    tty.write_all(text.as_bytes())?;
    tty.flush()?;
    // A byte at a time: what is typed ahead belongs to the next prompt.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while tty.read(&mut byte)? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Add or replace `user`'s entry in `file` (created if missing), written
/// whole to a temporary file and renamed over it.
pub fn add_user(file: &Path, user: &str, password: &str) -> Result<(), Error> {
    let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST)?;
    // A file that exists but cannot be read must not be rewritten as if empty.
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::ReadFile {
                path: file.to_path_buf(),
                source,
            })
        }
    };
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|l| l.split(':').next() != Some(user))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{user}:{hash}"));
    let tmp = file.with_extension("tmp");
    let write = |path: &Path, r: std::io::Result<()>| {
        r.map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
    };
    write(&tmp, std::fs::write(&tmp, lines.join("\n") + "\n"))?;
    write(file, std::fs::rename(&tmp, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_cannot_be_read_is_never_rewritten_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        // Not UTF-8: read_to_string fails. Its other users must survive.
        let before = b"alice:$2y$05$abc\nbob:\xff\xfe\n".to_vec();
        std::fs::write(&file, &before).unwrap();
        let err = add_user(&file, "carol", "pw").unwrap_err();
        assert!(matches!(err, Error::ReadFile { .. }), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), before);
        // A missing file is created.
        let new = dir.path().join("new");
        add_user(&new, "carol", "pw").unwrap();
        assert!(std::fs::read_to_string(&new)
            .unwrap()
            .starts_with("carol:$2"));
    }
}
