//! `runner build`: Dockerfiles built on a busybox base from the test's
//! registry, run with `runner run`; the step cache's rules, each shown by a
//! RUN that writes a timestamp; bad input.

use crate::harness::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A context dir with `files` (path, content) and a Dockerfile whose
/// `FROM base` is replaced by the busybox image.
pub(crate) fn context(w: &World, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
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

pub(crate) fn build(w: &World, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend(extra);
    let d = dir.to_str().unwrap().to_owned();
    args.push(&d);
    w.runner(&args)
}

pub(crate) fn build_ok(w: &World, dir: &Path, extra: &[&str]) -> String {
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
    assert!(again.contains("(0 RUN steps run,"), "{again}");
    // ... and makes the same image, as Docker's builders do: the history
    // times come from the cache records.
    let config = |log: &str| {
        log.lines()
            .find_map(|l| {
                l.strip_prefix("built ")?
                    .split(' ')
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no `built` line in {log}"))
    };
    assert_eq!(config(&again), config(&log), "{log}\n{again}");
}

fn stamp(w: &World, image: &str, file: &str) -> String {
    w.ok(&["run", image, "cat", file])
}

#[test]
fn cache_rules_each_shown_by_a_timestamp() {
    let w = World::new();
    let dir = context(
        &w,
        "cache",
        "FROM base\nCOPY src/*.txt /in/\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nARG V\nRUN echo $V > /v; cat /proc/sys/kernel/random/uuid > /stamp2\n",
        &[
            ("src/a.txt", "a"),
            ("src/ignored.txt", "i"),
            ("other.md", "not copied"),
            (".dockerignore", "src/ignored.txt\n"),
        ],
    );
    let t = ["-t", "local/cache"];
    build_ok(&w, &dir, &t);
    let first = stamp(&w, "local/cache", "/stamp");
    // Unchanged: cached.
    build_ok(&w, &dir, &t);
    assert_eq!(stamp(&w, "local/cache", "/stamp"), first);
    // An ignored file and a file no step copies: still cached.
    fs::write(dir.join("src/ignored.txt"), "changed").unwrap();
    fs::write(dir.join("other.md"), "changed").unwrap();
    let log = build_ok(&w, &dir, &t);
    assert_eq!(stamp(&w, "local/cache", "/stamp"), first, "{log}");
    // A file renamed under the glob: the COPY and what follows run again.
    fs::rename(dir.join("src/a.txt"), dir.join("src/b.txt")).unwrap();
    build_ok(&w, &dir, &t);
    let renamed = stamp(&w, "local/cache", "/stamp");
    assert_ne!(renamed, first);
    assert_eq!(w.ok(&["run", "local/cache", "ls", "/in"]), "b.txt\n");
    // A changed mode.
    let b = dir.join("src/b.txt");
    std::process::Command::new("chmod")
        .arg("600")
        .arg(&b)
        .status()
        .unwrap();
    build_ok(&w, &dir, &t);
    let chmodded = stamp(&w, "local/cache", "/stamp");
    assert_ne!(chmodded, renamed);
    // Same content rewritten (new mtime, same bytes): cached.
    fs::write(&b, "a").unwrap();
    build_ok(&w, &dir, &t);
    assert_eq!(stamp(&w, "local/cache", "/stamp"), chmodded);
    // A build arg only the second RUN sees: the first stays cached.
    let before2 = stamp(&w, "local/cache", "/stamp2");
    build_ok(&w, &dir, &["-t", "local/cache", "--build-arg", "V=1"]);
    assert_eq!(stamp(&w, "local/cache", "/stamp"), chmodded);
    assert_ne!(stamp(&w, "local/cache", "/stamp2"), before2);
    assert_eq!(stamp(&w, "local/cache", "/v"), "1\n");
    // --no-cache runs everything.
    build_ok(
        &w,
        &dir,
        &["-t", "local/cache", "--build-arg", "V=1", "--no-cache"],
    );
    assert_ne!(stamp(&w, "local/cache", "/stamp"), chmodded);
}

#[test]
fn snapshot_keeps_whiteouts_opaque_dirs_links_and_special_files() {
    let w = World::new();
    let dir = context(
        &w,
        "snap",
        "FROM base\nRUN mkdir -p /d/old /o && echo 1 > /d/gone && echo 2 > /o/old\n\
         RUN rm /d/gone && rm -rf /o && mkdir /o && echo new > /o/new \
         && echo h > /h1 && ln /h1 /h2 && mkfifo /fifo && mknod /null2 c 1 3 \
         && cp /bin/busybox /suid && chmod 4755 /suid && chown 1:2 /h1 && ln -s /h1 /sym \
         && mkdir /n && echo n > /n/a && ln /n/a /n/b && ln /n/a /h3 && chmod 600 /n/a && chown 3:4 /n/b\n",
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/snap"]);
    // Links between a file of a new directory (its metadata read by the
    // snapshot's readers) and one beside older files (read by the walk).
    let out = w.ok(&[
        "run",
        "local/snap",
        "sh",
        "-c",
        "stat -c '%i %a %u:%g %h' /h3 /n/a /n/b | sort -u | wc -l; stat -c '%a %u:%g %h' /n/b; cat /h3",
    ]);
    assert_eq!(out, "1\n600 3:4 3\nn\n");
    let out = w.ok(&[
        "run",
        "local/snap",
        "sh",
        "-c",
        "ls -A /d /o; [ $(stat -c %i /h1) = $(stat -c %i /h2) ] && echo linked; \
         stat -c '%F %a %u:%g' /fifo /null2 /suid /h1; readlink /sym; \
         stat -c '%t,%T' /null2; ls -A / | grep -c -e '^proc$' -e '^dev$' -e '^sys$'",
    ]);
    assert_eq!(
        out,
        "/d:\nold\n\n/o:\nnew\nlinked\nfifo 644 0:0\ncharacter special file 644 0:0\nregular file 4755 0:0\nregular file 644 1:2\n/h1\n1,3\n3\n"
    );
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let w = World::new();
    let dir = context(
        &w,
        "multi",
        "ARG BASE=base\nFROM base AS builder\nRUN echo built > /artifact\n\
         FROM base AS unused\nRUN exit 7\n\
         FROM scratch AS final\nCOPY --from=builder /artifact /bin/busybox /\nCMD [\"/busybox\", \"cat\", \"/artifact\"]\n",
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/multi"]);
    assert_eq!(w.ok(&["run", "local/multi"]), "built\n");
    build_ok(&w, &dir, &["-t", "local/builder", "--target", "builder"]);
    assert_eq!(
        w.ok(&["run", "local/builder", "cat", "/artifact"]),
        "built\n"
    );
    // COPY --from takes globs, matched one path element at a time.
    let dir = context(
        &w,
        "fromglob",
        "FROM base AS libs\nRUN mkdir -p /out/a /out/b && echo 1 > /out/a/x.so && echo 2 > /out/b/y.so && echo 3 > /out/a/z.txt\n\
         FROM base\nCOPY --from=libs /out/*/*.so /lib/\nCOPY --from=libs /out/?/z.* /txt/\n",
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/fromglob"]);
    assert_eq!(
        w.ok(&["run", "local/fromglob", "ls", "/lib", "/txt"]),
        "/lib:\nx.so\ny.so\n\n/txt:\nz.txt\n"
    );
    let dir = context(
        &w,
        "fromnoglob",
        "FROM base AS libs\nFROM base\nCOPY --from=libs /nothing/*.so /lib/\n",
        &[],
    );
    let out = crate::build::build(&w, &dir, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nothing/*.so: no source files were specified"),
        "{}",
        stderr(&out)
    );
}

/// Stages that need no other stage are built at the same time: two of them
/// note when their RUN started and ended, and the two spans overlap, which
/// one after the other they could not. Also with `--no-cache`, and the steps
/// of each are printed once.
#[test]
fn independent_stages_build_at_once() {
    let w = World::new();
    let run = |name: &str| {
        format!("FROM base AS {name}\nRUN echo {name} && cut -d' ' -f1 /proc/uptime > /start && sleep 1 && cut -d' ' -f1 /proc/uptime > /end\n")
    };
    let dockerfile = format!(
        "{}{}FROM base\nCOPY --from=a /start /a.start\nCOPY --from=a /end /a.end\n\
         COPY --from=b /start /b.start\nCOPY --from=b /end /b.end\n",
        run("a"),
        run("b")
    );
    let dir = context(&w, "parallel", &dockerfile, &[]);
    for extra in [&[][..], &["--no-cache"][..]] {
        let mut args = vec!["-t", "local/parallel"];
        args.extend(extra);
        let log = build_ok(&w, &dir, &args);
        for stage in ["[a] RUN", "[b] RUN"] {
            assert_eq!(log.matches(stage).count(), 1, "{extra:?}: {log}");
        }
        assert!(log.contains("(2 RUN steps run"), "{extra:?}: {log}");
        assert!(!log.contains("built after the others"), "{extra:?}: {log}");
        let t = |f: &str| -> f64 {
            w.ok(&["run", "local/parallel", "cat", f])
                .trim()
                .parse()
                .unwrap()
        };
        let (a, b) = ((t("/a.start"), t("/a.end")), (t("/b.start"), t("/b.end")));
        assert!(
            a.0 < b.1 && b.0 < a.1,
            "{extra:?}: a ran {a:?}, b ran {b:?}: one after the other"
        );
    }
}

/// On a terminal, `--progress auto` redraws a running RUN's time and last
/// output lines under its step, erases them when it ends, and does not print
/// the output again (plain progress does).
#[test]
fn progress_auto_on_a_terminal_redraws_the_running_step() {
    let w = World::new();
    let dir = context(
        &w,
        "live",
        "FROM base\nRUN for i in 1 2 3 4 5; do echo line-$i; sleep 0.3; done\n",
        &[],
    );
    let screen = w.dir.path().join("typescript");
    let cmd = format!(
        "{} --root {} build -t local/live {}",
        env!("CARGO_BIN_EXE_runner"),
        w.root().display(),
        dir.display()
    );
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd])
        .arg(&screen)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = fs::read_to_string(&screen).unwrap();
    assert!(out.status.success(), "{screen}");
    let erase = "\x1b[1A\x1b[2K";
    assert!(
        screen.contains("#2 \x1b[2mline-1"),
        "shown while running: {screen:?}"
    );
    let done = screen.find("#2 DONE").expect("a DONE line");
    assert!(
        screen[..done].ends_with(erase),
        "erased before DONE: {screen:?}"
    );
    assert!(!screen.contains("#2 line-1"), "printed again: {screen:?}");
}

/// A failing build: the message names the file and line, the exit status is
/// not 0, and the tag does not exist.
pub(crate) fn fails(
    w: &World,
    name: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
    expected: &[&str],
) {
    let dir = context(w, name, dockerfile, files);
    let tag = format!("local/{name}");
    let out = build(w, &dir, &["-t", &tag]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{name}: {err}");
    for e in expected {
        assert!(err.contains(e), "{name}: expected {e:?} in:\n{err}");
    }
    let images = w.ok(&["images"]);
    assert!(!images.contains(&tag), "{name}: tagged anyway:\n{images}");
}

#[test]
fn bad_input_is_one_clear_message_and_tags_nothing() {
    let w = World::new();
    fails(
        &w,
        "syntax",
        "FROM base\nRUN true\nCOPY [\"a\"\n",
        &[],
        &["Dockerfile:3: COPY", "at least two arguments"],
    );
    fails(
        &w,
        "unknown",
        "FROM base\n\nFROBNICATE x\n",
        &[],
        &["Dockerfile:3: unknown instruction: FROBNICATE"],
    );
    fails(
        &w,
        "missing",
        "FROM base\nCOPY nothere /x\n",
        &[],
        &["Dockerfile:2: COPY nothere /x: nothere: not found in the build context"],
    );
    fails(
        &w,
        "runfails",
        "FROM base\nRUN echo first line; echo to stderr >&2; exit 3\n",
        &[],
        &[
            "Dockerfile:2: RUN",
            "exit code: 3",
            "> first line",
            "> to stderr",
        ],
    );
    fails(
        &w,
        "outside",
        "FROM base\nCOPY ../secret /x\n",
        &[],
        &["Dockerfile:2:", "outside the build context"],
    );
    fails(
        &w,
        "nostage",
        "FROM base\nCOPY --from=nosuch /a /b\n",
        &[],
        &["Dockerfile:2:", "--from=nosuch: not a stage"],
    );
}

#[test]
fn built_image_pushed_to_our_registry_runs_elsewhere() {
    let w = World::new();
    let dir = context(
        &w,
        "push",
        "FROM base\nCOPY hello.txt /\nRUN echo ran > /ran\nCMD [\"cat\", \"/hello.txt\", \"/ran\"]\n",
        &[("hello.txt", "hello\n")],
    );
    let remote = format!("{}/built/app:1", w.reg.addr);
    let log = build_ok(&w, &dir, &["-t", &remote, "--push"]);
    // The base layer is mounted from the base image's repository; the COPY
    // and RUN layers and the config are uploaded.
    assert!(
        log.contains("3 uploaded, 1 mounted, 0 already there"),
        "{log}"
    );
    let again = w.ok(&["push", &remote]);
    assert_eq!(again, "");
    let second = w.runner(&["push", &remote]);
    assert!(
        stderr(&second).contains("0 uploaded, 0 mounted, 4 already there"),
        "{}",
        stderr(&second)
    );
    // Another state root pulls it from the registry and runs it.
    let other = w.dir.path().join("other-root");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("--root")
        .arg(&other)
        .args(["run", &remote])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "hello\nran\n", "{}", stderr(&out));
    // tag and history.
    w.ok(&["tag", &remote, "local/copy:2"]);
    assert_eq!(w.ok(&["run", "local/copy:2"]), "hello\nran\n");
    let history = w.ok(&["history", "local/copy:2"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("CREATED"), "{history}");
    assert!(
        lines[1].contains("CMD [\"cat\",\"/hello.txt\",\"/ran\"]"),
        "{history}"
    );
    assert!(
        lines[2].contains("RUN /bin/sh -c echo ran > /ran # buildkit"),
        "{history}"
    );
    assert!(
        lines[3].contains("COPY hello.txt / # buildkit"),
        "{history}"
    );
}

#[test]
fn prune_and_builder_prune_remove_build_cache() {
    let w = World::new();
    let dir = context(
        &w,
        "prune",
        "FROM base\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n",
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/p"]);
    let first = stamp(&w, "local/p", "/stamp");
    // The image uses the layer: prune keeps its cache.
    w.ok(&["prune"]);
    build_ok(&w, &dir, &["-t", "local/p"]);
    assert_eq!(stamp(&w, "local/p", "/stamp"), first);
    // builder prune removes all of it.
    assert!(w.ok(&["builder", "prune"]).starts_with("removed "));
    build_ok(&w, &dir, &["-t", "local/p"]);
    let second = stamp(&w, "local/p", "/stamp");
    assert_ne!(second, first);
    // An image gone: prune removes the cache only it used.
    w.ok(&["rmi", "local/p"]);
    // The store counts a blob's idleness in whole seconds (see ImageStore::remove_unused_blobs).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.ok(&["prune"]);
    assert!(fs::read_dir(w.root().join("build/cache"))
        .unwrap()
        .all(|e| {
            let r: serde_json::Value =
                serde_json::from_slice(&fs::read(e.unwrap().path()).unwrap()).unwrap();
            r["layer"].is_null()
        }));
}

pub(crate) fn tar_bytes(entries: &[(&str, &[u8], u32, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode, owner) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(*owner);
        h.set_gid(*owner);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        // Written raw: the tar crate refuses `..`, which a hostile archive has.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn add_extracts_local_archives_unless_told_not_to() {
    use std::io::Write;
    let w = World::new();
    let dir = context(
        &w,
        "add",
        "FROM base\nADD a.tar.gz /ex/\nADD b.tar.zst /\nADD --unpack=false a.tar.gz /raw/\nADD plain.txt /p.txt\n",
        &[("plain.txt", "plain\n")],
    );
    let raw = tar_bytes(&[
        ("d/x.txt", b"x\n", 0o640, 5),
        ("../../escape.txt", b"e\n", 0o644, 0),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    fs::write(dir.join("a.tar.gz"), gz.finish().unwrap()).unwrap();
    let zst = zstd::encode_all(&tar_bytes(&[("z.txt", b"z\n", 0o600, 0)])[..], 3).unwrap();
    fs::write(dir.join("b.tar.zst"), zst).unwrap();
    build_ok(&w, &dir, &["-t", "local/add"]);
    let out = w.ok(&[
        "run",
        "local/add",
        "sh",
        "-c",
        "cat /ex/d/x.txt /ex/escape.txt /z.txt /p.txt; stat -c '%a %u:%g' /ex/d/x.txt; ls /raw",
    ]);
    assert_eq!(out, "x\ne\nz\nplain\n640 5:5\na.tar.gz\n");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let w = World::new();
    let dir = context(
        &w,
        "repro",
        "FROM base\nCOPY f /f\nRUN mkdir /out && echo same > /out/file && touch /out/new\nENV A=1\n",
        &[("f", "f\n")],
    );
    let digest = || {
        let d = dir.to_str().unwrap();
        let out = w
            .cmd(&["build", "-q", "--no-cache", d])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "-q prints only the digest");
        stdout(&out)
    };
    let first = digest();
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(digest(), first);
}

#[test]
fn sandbox_mount_points_stay_out_of_the_layer() {
    let w = World::new();
    let dir = w.dir.path().join("scratch");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(BUSYBOX, dir.join("busybox")).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo hi > /hi\"]\n",
    )
    .unwrap();
    build_ok(&w, &dir, &["-t", "local/scratch"]);
    // No /etc, /proc, /sys or /dev made by the sandbox, only /hi.
    let out = w.ok(&["history", "local/scratch"]);
    let run = out.lines().find(|l| l.contains("RUN")).unwrap();
    assert!(
        run.contains(" 2.0kB "),
        "one file's header and data and the end blocks: {run}"
    );
}

/// Host processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .count()
}

pub(crate) fn step_dirs(w: &World) -> Vec<PathBuf> {
    fs::read_dir(w.root().join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("build-"))
        .collect()
}

/// A runner killed (SIGKILL) in the middle of a RUN: the step's process dies
/// with it, and the next command removes the step's scratch directory, while
/// a build in progress keeps its own.
#[test]
fn a_build_killed_mid_run_leaves_nothing_for_long() {
    let w = World::new();
    let dir = context(
        &w,
        "killed",
        "FROM base\nRUN echo started && sleep 987654\n",
        &[],
    );
    let mut build = w
        .cmd(&["build", "--progress", "plain", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while processes_running(&["sleep", "987654"]) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        assert!(build.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Its upper dir is on a tmpfs of its own.
    assert_eq!(mounts_under(&w.root()), 1, "the step's memory scratch");
    // In progress: its scratch dir is locked and stays.
    let out = w.ok(&["prune"]);
    assert!(out.contains("0 interrupted build steps"), "{out}");
    assert_eq!(step_dirs(&w).len(), 1);
    build.kill().unwrap();
    build.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_running(&["sleep", "987654"]) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the step outlived its runner"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(step_dirs(&w).len(), 1, "left for the next command");
    let out = w.ok(&["prune"]);
    assert!(out.contains("1 interrupted build steps"), "{out}");
    assert!(step_dirs(&w).is_empty(), "{:?}", step_dirs(&w));
    assert_eq!(mounts_under(&w.root()), 0, "the tmpfs goes with its dir");
}

/// Mounts at or below `dir`.
pub(crate) fn mounts_under(dir: &Path) -> usize {
    let prefix = dir.to_str().unwrap().to_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1).is_some_and(|m| m.starts_with(&prefix)))
        .count()
}

/// A RUN that fills its memory scratch (made 1 MiB here) fails there and
/// is run again on disk, with the same result a disk build gives; nothing
/// stays mounted.
#[test]
fn a_step_that_fills_the_memory_scratch_runs_again_on_disk() {
    let w = World::new();
    let dir = context(
        &w,
        "bigstep",
        "FROM base\nRUN dd if=/dev/zero of=/big bs=1024 count=3072 && echo done > /ok\n",
        &[],
    );
    let out = w
        .cmd(&[
            "build",
            "--progress",
            "plain",
            "-t",
            "local/bigstep",
            dir.to_str().unwrap(),
        ])
        .env("STRATA_BUILD_SCRATCH_SIZE", "1m")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("filled the memory scratch; running it again on disk"),
        "{err}"
    );
    assert_eq!(w.ok(&["run", "local/bigstep", "cat", "/ok"]), "done\n");
    assert_eq!(
        w.ok(&["run", "local/bigstep", "stat", "-c", "%s", "/big"]),
        "3145728\n"
    );
    assert_eq!(mounts_under(&w.root()), 0);
    assert!(step_dirs(&w).is_empty(), "{:?}", step_dirs(&w));
}
