//! The one harness of the registry's integration tests: start the real
//! `registry serve` on `127.0.0.1:0`, learn the address it bound (it prints
//! `listening on ADDR` first), and kill it on drop; plus the helpers every
//! module uses (users, digests, error codes, a monolithic blob push).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use store::manifest::{OCI_INDEX, OCI_MANIFEST};

/// A registry process; killed on drop.
pub struct Registry {
    child: Child,
    /// `http://ADDR` or `https://ADDR`.
    pub base: String,
    /// The address it bound.
    pub addr: SocketAddr,
    /// The directory it runs in: its data, config, htpasswd and log.
    pub dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

/// How to start a [`Registry`]: `registry serve --listen 127.0.0.1:0` in a
/// directory, then the flags given, logging at `warn` to the test's stderr.
pub struct Launch {
    command: Command,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    scheme: &'static str,
}

impl Launch {
    /// Add flags.
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.command.args(args);
        self
    }

    /// Keep the data in `<dir>/data` (`--data`).
    pub fn data(mut self) -> Launch {
        self.command.arg("--data").arg(self.dir.join("data"));
        self
    }

    /// Log at `level` (`STRATA_LOG`).
    pub fn log_level(mut self, level: &str) -> Launch {
        self.command.env("STRATA_LOG", level);
        self
    }

    /// Send the log to `stderr`.
    pub fn stderr(mut self, stderr: impl Into<Stdio>) -> Launch {
        self.command.stderr(stderr);
        self
    }

    /// Start with stderr closed (through `sh`: `exec 2>&-`).
    pub fn close_stderr(self) -> Launch {
        let mut command = Command::new("sh");
        command
            .args(["-c", "exec 2>&-; exec \"$0\" \"$@\""])
            .arg(self.command.get_program())
            .args(self.command.get_args());
        if let Some(dir) = self.command.get_current_dir() {
            command.current_dir(dir);
        }
        for (name, value) in self.command.get_envs() {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        Launch { command, ..self }
    }

    /// Set an environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.command.env(name, value);
        self
    }

    /// Send the log to `<dir>/log` (read it with [`Registry::log`]).
    pub fn log_file(self) -> Launch {
        let file = std::fs::File::create(self.dir.join("log")).unwrap();
        self.stderr(file)
    }

    /// The server speaks HTTPS (the flags must give it a certificate).
    pub fn https(mut self) -> Launch {
        self.scheme = "https";
        self
    }

    /// Start it and wait for its address line.
    pub fn start(mut self) -> Registry {
        let mut child = self
            .command
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
        Registry {
            child,
            base: format!("{}://{addr}", self.scheme),
            addr: addr.parse().unwrap(),
            dir: self.dir,
            tmp: self.tmp,
        }
    }
}

impl Registry {
    /// A registry running in `dir`.
    pub fn launch(dir: &Path) -> Launch {
        let mut command = Command::new(env!("CARGO_BIN_EXE_registry"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env("STRATA_LOG", "warn");
        Launch {
            command,
            dir: dir.to_path_buf(),
            tmp: None,
            scheme: "http",
        }
    }

    /// A registry running in `dir`, which it removes when dropped.
    pub fn launch_owning(dir: tempfile::TempDir) -> Launch {
        let mut launch = Registry::launch(dir.path());
        launch.tmp = Some(dir);
        launch
    }

    /// A registry in a fresh temp dir, keeping its data in `data/`.
    pub fn launch_fresh() -> Launch {
        Registry::launch_owning(tempfile::tempdir().unwrap()).data()
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it logged to `<dir>/log` (see [`Launch::log_file`]); complete
    /// once it stopped ([`Registry::terminate`]).
    pub fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(self.dir.join("log"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// Close our end of a piped stderr (see [`Launch::stderr`]): the
    /// registry's log reader is gone.
    pub fn close_stderr_pipe(&mut self) {
        drop(self.child.stderr.take().expect("stderr was piped"));
    }

    /// Stop with SIGTERM and wait for the exit (a minute at most: a
    /// registry that ignores SIGTERM fails the test rather than hanging it).
    /// The log is complete afterwards (lines are written by a thread of
    /// their own, flushed at exit).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the registry did not stop within a minute of SIGTERM");
    }

    /// Send SIGHUP: reload the configuration.
    pub fn hangup(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    /// Wait until the log file holds `needle` `count` times (a minute at
    /// most, then the test fails with the log); for what the registry does
    /// in the background, such as a reload.
    pub fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {count}x {needle:?} in the log within a minute:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Stop with SIGKILL, what a crash looks like, and keep the directory:
    /// returned for a restart (the caller owns it from now on).
    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.tmp
            .take()
            .map(|t| t.keep())
            .unwrap_or(self.dir.clone())
    }

    /// Files under `data/storage/<prefix>`, recursively.
    pub fn stored_files(&self, prefix: &str) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        out.push(path);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.join("data/storage").join(prefix), &mut out);
        out
    }

    /// The process's peak resident memory, in KiB.
    pub fn rss_peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Add `user` with password `<user>-pw` to `dir/htpasswd`, through the real
/// `registry htpasswd` command.
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

/// The `sha256:` digest of `b`.
pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// The first error code of an error response's body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"]
        .as_str()
        .expect("errors[0].code")
        .to_owned()
}

/// Push `data` to `repo` in one POST, as `who` if given; its digest.
pub async fn push_blob_as(
    reg: &Registry,
    repo: &str,
    who: Option<(&str, &str)>,
    data: &[u8],
) -> String {
    let d = sha256(data);
    let mut request = Client::new()
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec());
    if let Some((user, password)) = who {
        request = request.basic_auth(user, Some(password));
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push blob to {repo}");
    d
}

/// Push `data` to `repo` anonymously; its digest.
pub async fn push_blob(reg: &Registry, repo: &str, data: &[u8]) -> String {
    push_blob_as(reg, repo, None, data).await
}
