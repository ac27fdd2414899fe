//! Shared by the registry's integration tests: start the real binary and learn
//! the loopback address it bound (it prints `listening on ADDR` first).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

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
