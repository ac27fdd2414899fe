//! Compiles `init/init.c`, the PID 1 of `runner run --init`, into a static
//! binary that the runner embeds (`include_bytes!` in `sandbox/init.rs`).
//! Needs gcc and static glibc (Debian's `gcc` and `libc6-dev`, see DEPS.txt);
//! `STRATA_INIT_CC` names another C compiler.
//!
//! Also sets `STRATA_GIT_COMMIT` for `runner --version`: `git rev-parse
//! --short HEAD` when the source is a git checkout, else "unknown".

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Exports the short commit hash, rebuilding when HEAD or its branch moves.
fn git_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let mut watched = vec!["HEAD".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    watched.push("packed-refs".to_owned());
    for name in watched {
        // A path that does not exist would make cargo rerun this every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STRATA_GIT_COMMIT={commit}");
}

fn main() {
    git_commit();
    let source = "init/init.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=STRATA_INIT_CC");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("strata-init");
    let cc = env::var("STRATA_INIT_CC").unwrap_or_else(|_| "gcc".to_owned());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| {
            panic!("running {cc} to build {source}: {e} (install gcc and libc6-dev, see runner/DEPS.txt)")
        });
    assert!(
        status.success(),
        "{cc} failed to build {source} as a static binary (is static glibc, libc6-dev, installed?)"
    );
}
