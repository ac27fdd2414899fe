//! `runner build`: Dockerfiles built on a busybox base from the test's
//! registry, run with `runner run`; the step cache's rules, each shown by a
//! RUN that writes a timestamp; bad input.

use crate::harness::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A context dir with `files` (path, content) and a Dockerfile whose
/// `FROM base` is replaced by the busybox image.
fn context(w: &World, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = w.dir.path().join(name);
    fs::create_dir_all(&dir).unwrap();
    let base = base_image(w);
    fs::write(
        dir.join("Dockerfile"),
        dockerfile.replace("FROM base", &format!("FROM {base}")),
    )
    .unwrap();
    for (p, c) in files {
        let path = dir.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
    dir
}

fn base_image(w: &World) -> String {
    let image = w.image("busybox");
    if !w.dir.path().join("pushed-busybox").exists() {
        w.push_busybox("busybox", vec![]);
        fs::write(w.dir.path().join("pushed-busybox"), "").unwrap();
    }
    image
}

fn build(w: &World, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend(extra);
    let d = dir.to_str().unwrap().to_owned();
    args.push(&d);
    w.runner(&args)
}

fn build_ok(w: &World, dir: &Path, extra: &[&str]) -> String {
    let out = build(w, dir, extra);
    assert!(
        out.status.success(),
        "build failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn built_image_runs_with_config_and_layers() {
    let w = World::new();
    let dir = context(
        &w,
        "app",
        "FROM base\nENV GREETING=hello\nARG WHO=world\nWORKDIR /app\nCOPY msg.txt sub/ ./\nRUN echo \"$GREETING $WHO\" > out.txt && mkdir -p /data && echo x > /data/y\nUSER app\nCMD [\"cat\", \"/app/out.txt\", \"/app/msg.txt\", \"/app/inner.txt\"]\n",
        &[("msg.txt", "copied\n"), ("sub/inner.txt", "inner\n")],
    );
    let log = build_ok(&w, &dir, &["-t", "local/app:1"]);
    assert!(log.contains("RUN"), "{log}");
    assert_eq!(
        w.ok(&["run", "local/app:1"]),
        "hello world\ncopied\ninner\n"
    );
    assert_eq!(w.ok(&["run", "local/app:1", "id", "-un"]), "app\n");
    assert_eq!(w.ok(&["run", "local/app:1", "pwd"]), "/app\n");
    // ARG values reach RUN but not the image.
    assert_eq!(
        w.ok(&["run", "local/app:1", "sh", "-c", "echo ${WHO:-unset}"]),
        "unset\n"
    );
    assert!(w.ok(&["images"]).contains("local/app:1"));
    // A rebuild runs nothing.
    let again = build_ok(&w, &dir, &["-t", "local/app:1"]);
    assert_eq!(again.matches("CACHED").count(), 8, "{again}");
    assert!(again.contains("0 steps run"), "{again}");
}
