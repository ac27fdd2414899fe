//! Compiles `init/init.c`, the PID 1 of `runner run --init`, into a static
//! binary that the runner embeds (`include_bytes!` in `sandbox/init.rs`).
//! Needs gcc and static glibc (Debian's `gcc` and `libc6-dev`, see DEPS.txt);
//! `STRATA_INIT_CC` names another C compiler.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
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
