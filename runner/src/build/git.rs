//! `ADD <git URL> <dest>`: a repository's tree at a ref, as BuildKit adds it.
//!
//! A git URL is `git://...`, or `http(s)://...` whose path ends in `.git`,
//! with an optional fragment `#REF[:SUBDIR]`: a branch, a tag or a commit
//! (default the remote's `HEAD`) and the directory of the tree to add
//! (default the whole tree). The host's `git` fetches it (the ref alone,
//! shallow, unless it is a commit id) into the step's scratch directory and
//! checks it out there; the tree is then copied like a context directory,
//! so the step's cache key holds its content (names, modes, bytes), not the
//! commit. `.git` is left out unless `--keep-git-dir=true`. Submodules and
//! LFS objects are not fetched; `ssh` URLs (`git@host:...`) are refused.
//!
//! A Dockerfile names the URL, so it is as hostile as the rest of it: git
//! runs with an empty environment (no proxy, no credentials, no askpass,
//! no prompt), no system or user configuration, no hooks, and only the
//! `git`, `http` and `https` transports (`GIT_ALLOW_PROTOCOL`: no `ext::`
//! or `file://` trick runs a command or reads the host); the URL and the
//! ref go after `--` or are checked first, so neither is read as an option.

use std::path::Path;
use std::process::Command;

/// A git URL taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct GitUrl {
    /// The remote, without the fragment.
    pub remote: String,
    /// The ref (`None`: the remote's `HEAD`).
    pub reference: Option<String>,
    /// The directory of the tree to add, relative (`""`: the whole tree).
    pub subdir: String,
}

/// Whether `src` names a git repository rather than a file (BuildKit's
/// rule, for the transports supported).
pub fn is_git_url(src: &str) -> bool {
    let remote = src.split('#').next().unwrap_or(src);
    if remote.starts_with("git://") || src.starts_with("git@") || remote.starts_with("ssh://") {
        return true;
    }
    (remote.starts_with("http://") || remote.starts_with("https://"))
        && remote
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .ends_with(".git")
}

/// Take `src` apart; an error for what cannot be fetched.
pub fn parse(src: &str) -> Result<GitUrl, String> {
    if src.starts_with("git@") || src.starts_with("ssh://") {
        return Err(format!(
            "{src}: git over ssh is not supported; use a git:// or https:// URL"
        ));
    }
    let (remote, fragment) = match src.split_once('#') {
        Some((r, f)) => (r, f),
        None => (src, ""),
    };
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, d)) => (r, d),
        None => (fragment, ""),
    };
    let valid_ref = |r: &str| {
        !r.starts_with('-')
            && r.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if !valid_ref(reference) {
        return Err(format!(
            "{src}: {reference:?} is not a branch, tag or commit name"
        ));
    }
    let subdir = super::copy::clean_source(subdir)
        .ok_or_else(|| format!("{src}: the directory {subdir:?} leaves the repository"))?;
    Ok(GitUrl {
        remote: remote.to_owned(),
        reference: (!reference.is_empty()).then(|| reference.to_owned()),
        subdir,
    })
}

/// Whether `r` is a full commit id.
fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Fetch `url` into `dir` (which must not exist) and check out its ref
/// there. Returns the commit checked out.
pub fn checkout(url: &GitUrl, dir: &Path, home: &Path) -> Result<String, String> {
    let dir_arg = dir.to_string_lossy().into_owned();
    git(home, None, &["init", "-q", &dir_arg])?;
    match url.reference.as_deref() {
        Some(commit) if is_commit(commit) => {
            git(
                home,
                Some(dir),
                &[
                    "fetch",
                    "-q",
                    "--no-tags",
                    "--",
                    &url.remote,
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )?;
            git(
                home,
                Some(dir),
                &["checkout", "-q", "--detach", commit, "--"],
            )?;
        }
        reference => {
            let reference = reference.unwrap_or("HEAD");
            git(
                home,
                Some(dir),
                &[
                    "fetch",
                    "-q",
                    "--depth",
                    "1",
                    "--no-tags",
                    "--",
                    &url.remote,
                    reference,
                ],
            )?;
            git(
                home,
                Some(dir),
                &["checkout", "-q", "--detach", "FETCH_HEAD", "--"],
            )?;
        }
    }
    let commit = git(home, Some(dir), &["rev-parse", "HEAD"])?;
    recorded_modes(dir).map_err(|e| format!("cannot set the checkout's modes: {e}"))?;
    Ok(commit.trim().to_owned())
}

/// Give the checkout the modes git records, whatever the runner's umask
/// made of them: 0755 for directories and executables, 0644 for other
/// files (symbolic links have none).
fn recorded_modes(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        let mode = if kind.is_dir() {
            recorded_modes(&path)?;
            0o755
        } else if kind.is_file() {
            match entry.metadata()?.permissions().mode() & 0o100 {
                0 => 0o644,
                _ => 0o755,
            }
        } else {
            continue;
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Run the host's git in `cwd` with nothing of the caller's environment;
/// its stdout, or its last line of stderr as the error.
fn git(home: &Path, cwd: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "git:http:https")
        .env("GIT_ASKPASS", "/bin/false")
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "http.lowSpeedLimit=1",
            "-c",
            "http.lowSpeedTime=60",
        ])
        .args(args)
        .stdin(std::process::Stdio::null());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }

    let out = cmd
        .output()
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("git {} failed: {}", args[0], last.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart_as_buildkit_does() {
        assert!(is_git_url("git://h/r"));
        assert!(is_git_url("https://h/o/r.git#v1:docs"));
        assert!(is_git_url("http://h/r.git/"));
        assert!(!is_git_url("https://h/file.tar.gz"));
        assert!(!is_git_url("ext::sh -c touch% /tmp/x"));
        assert_eq!(
            parse("https://h/r.git#v1:a/b").unwrap(),
            GitUrl {
                remote: "https://h/r.git".into(),
                reference: Some("v1".into()),
                subdir: "a/b".into()
            }
        );
        assert_eq!(parse("git://h/r").unwrap().reference, None);
        assert!(parse("git://h/r#--upload-pack=x").is_err());
        assert!(parse("git://h/r#main:../..").is_err());
        assert!(parse("git@github.com:o/r.git").is_err());
    }
}
