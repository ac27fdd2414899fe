//! `runner build`'s ADD of a git repository, served by a real `git daemon`
//! on 127.0.0.1 that the test starts (and stops by its PID): a branch's
//! tree without `.git`, a tag's subdirectory, `--keep-git-dir`, modes and
//! symlinks kept, a cache that follows the content, and clear failures.

use crate::build::{build_ok, context, fails};
use crate::harness::*;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A repository `repo.git` served over `git://` by `git daemon`, with a
/// working clone the test commits into.
struct GitServer {
    daemon: Child,
    port: u16,
    work: PathBuf,
    home: PathBuf,
}

/// Run git in `dir` with a private HOME and identity; panics on failure.
fn git(home: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl GitServer {
    /// `v1` (tag): README "v1", sub/a.txt, sub/run.sh (0755), link ->
    /// README; then on main README "v2".
    fn start(w: &World) -> GitServer {
        let root = w.dir.path().join("git");
        let (work, served, home) = (root.join("work"), root.join("served"), root.join("home"));
        for d in [&work, &served, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        git(&home, &work, &["init", "-q"]);
        std::fs::write(work.join("README"), "v1\n").unwrap();
        std::fs::create_dir(work.join("sub")).unwrap();
        std::fs::write(work.join("sub/a.txt"), "a\n").unwrap();
        std::fs::write(work.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let exe = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(work.join("sub/run.sh"), exe).unwrap();
        std::os::unix::fs::symlink("README", work.join("link")).unwrap();
        git(&home, &work, &["add", "-A"]);
        git(&home, &work, &["commit", "-qm", "one"]);
        git(&home, &work, &["tag", "v1"]);
        std::fs::write(work.join("README"), "v2\n").unwrap();
        git(&home, &work, &["commit", "-qam", "two"]);
        let bare = served.join("repo.git");
        git(
            &home,
            &root,
            &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // git-daemon itself, not `git daemon`: that runs it as a child of
        // its own, which killing `git` would leave behind.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8(exec_path.stdout).unwrap();
        let daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .env("HOME", &home)
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", served.display()))
            .arg(&served)
            .spawn()
            .unwrap();
        let server = GitServer {
            daemon,
            port,
            work,
            home,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("git daemon did not listen on {port}");
    }

    fn url(&self, fragment: &str) -> String {
        format!("git://127.0.0.1:{}/repo.git{fragment}", self.port)
    }

    /// Commit `content` as README on main, and `hostetc` -> `/etc`, and
    /// publish it.
    fn commit_readme(&self, content: &str) {
        std::fs::write(self.work.join("README"), content).unwrap();
        let _ = std::os::unix::fs::symlink("/etc", self.work.join("hostetc"));
        git(&self.home, &self.work, &["add", "-A"]);
        git(&self.home, &self.work, &["commit", "-qm", "more"]);
        let bare = self.work.parent().unwrap().join("served/repo.git");
        git(
            &self.home,
            &self.work,
            &["push", "-q", bare.to_str().unwrap(), "main"],
        );
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
fn add_git_adds_a_ref_or_a_subdir_without_git_dir_unless_kept() {
    let w = World::new();
    let g = GitServer::start(&w);
    let df = format!(
        "FROM base\nADD {} /all\nADD {} /sub/\nADD --keep-git-dir=true {} /kept\n",
        g.url(""),
        g.url("#v1:sub"),
        g.url("#v1"),
    );
    let dir = context(&w, "addgit", &df, &[]);
    build_ok(&w, &dir, &["-t", "local/addgit"]);
    let out = w.ok(&[
        "run",
        "local/addgit",
        "sh",
        "-c",
        "cat /all/README; ls -A /all; readlink /all/link; stat -c '%n %a %u:%g' /sub/a.txt /sub/run.sh; \
         ls -A /sub; test -f /kept/.git/HEAD && echo kept; cat /kept/README",
    ]);
    assert_eq!(
        out,
        "v2\nREADME\nlink\nsub\nREADME\n/sub/a.txt 644 0:0\n/sub/run.sh 755 0:0\na.txt\nrun.sh\nkept\nv1\n"
    );
}

#[test]
fn add_git_is_cached_by_content_and_failures_name_the_line() {
    let w = World::new();
    let g = GitServer::start(&w);
    let df = format!(
        "FROM base\nADD {} /src\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n",
        g.url("#main")
    );
    let dir = context(&w, "gitcache", &df, &[]);
    let t = ["-t", "local/gitcache"];
    build_ok(&w, &dir, &t);
    let stamp = w.ok(&["run", "local/gitcache", "cat", "/stamp"]);
    // Unchanged: both steps cached, the RUN does not run again.
    let log = build_ok(&w, &dir, &t);
    assert!(add_cached(&log), "{log}");
    assert_eq!(w.ok(&["run", "local/gitcache", "cat", "/stamp"]), stamp);
    // A new commit on the branch: the ADD and the RUN after it run again.
    g.commit_readme("v3\n");
    let log = build_ok(&w, &dir, &t);
    assert!(!add_cached(&log), "{log}");
    assert_eq!(
        w.ok(&["run", "local/gitcache", "cat", "/src/README"]),
        "v3\n"
    );
    assert_ne!(w.ok(&["run", "local/gitcache", "cat", "/stamp"]), stamp);

    // A symbolic link to the host's /etc, as the directory to add: the
    // link itself is added, never the host's files.
    let dir = context(
        &w,
        "gitlink",
        &format!("FROM base\nADD {} /e\n", g.url("#main:hostetc")),
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/gitlink"]);
    let listing = w.ok(&[
        "run",
        "local/gitlink",
        "sh",
        "-c",
        "test -L /e && readlink /e; cat /e/shadow 2>/dev/null || true",
    ]);
    assert_eq!(listing, "/etc\n", "the link itself, no host file");

    let missing = format!("git://127.0.0.1:{}/none.git", g.port);
    fails(
        &w,
        "gitmissing",
        &format!("FROM base\nRUN true\nADD {missing} /x\n"),
        &[],
        &["Dockerfile:3: ADD", &missing, "git fetch failed"],
    );
    fails(
        &w,
        "gitnoref",
        &format!("FROM base\nADD {} /x\n", g.url("#nosuchbranch")),
        &[],
        &["Dockerfile:2: ADD", "git fetch failed"],
    );
    fails(
        &w,
        "gitescape",
        &format!("FROM base\nADD {} /x\n", g.url("#main:../..")),
        &[],
        &["Dockerfile:2: ADD", "leaves the repository"],
    );
    fails(
        &w,
        "gitoption",
        &format!("FROM base\nADD {} /x\n", g.url("#--upload-pack=touch")),
        &[],
        &["Dockerfile:2: ADD", "is not a branch, tag or commit name"],
    );
    fails(
        &w,
        "gitsum",
        &format!(
            "FROM base\nADD --checksum={} {} /x\n",
            "0".repeat(40),
            g.url("")
        ),
        &[],
        &["Dockerfile:2: ADD", "does not match", "it is at commit"],
    );
    fails(
        &w,
        "gitssh",
        "FROM base\nADD git@example.invalid:o/r.git /x\n",
        &[],
        &["Dockerfile:2: ADD", "git over ssh is not supported"],
    );
}

/// Whether the build log shows the ADD step CACHED.
fn add_cached(log: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    let add = lines.iter().position(|l| l.contains("] ADD ")).unwrap();
    lines[add + 1].ends_with(" CACHED")
}
