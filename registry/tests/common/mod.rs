//! Shared by the registry's integration tests: start the real binary and learn
//! the loopback address it bound (it prints `listening on ADDR` first).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Add `user` with password `<user>-pw` to `dir/htpasswd`, through the real
/// `registry htpasswd` command. (Each test binary compiles this module;
/// those without users do not call it.)
#[allow(dead_code)]
pub fn add_user(dir: &Path, user: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["htpasswd", "htpasswd", user])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}-pw\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Spawn `command` (a `registry serve --listen 127.0.0.1:0 ...`) with its
/// stdout piped, and wait for its address line. Returns the child and the
/// address, `host:port`.
pub fn spawn_registry(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("start registry");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the address line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}
