//! Build script: the git commit for `registry --version`, as
//! `STRATA_GIT_COMMIT` (`git rev-parse --short HEAD`, or `unknown` outside
//! a git checkout or without git).

use std::path::PathBuf;
use std::process::Command;

/// What `git ARGS` prints, trimmed; `None` when git fails or is missing.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STRATA_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it
    // names (a commit) and packed-refs, located through git so worktrees
    // work too. Only files that exist: a missing one would rerun every build.
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    files.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for file in files {
        let path =
            git(&["rev-parse", "--path-format=absolute", "--git-path", &file]).map(PathBuf::from);
        if let Some(path) = path.filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
