//! `runner build`'s `RUN --mount`: bind mounts of the context (after
//! `.dockerignore`, read-only, or read-write with the writes thrown away;
//! a directory nothing is ignored in bound as it is),
//! of a stage's files, cache mounts that outlive builds until `builder
//! prune`, tmpfs, and secrets that reach the step and nothing else (not the
//! layer, the cache, the state root on disk, nor a later step). No mount
//! point is left in a layer.

use crate::build::{build_ok, context, fails};
use crate::harness::*;
use std::fs;
use std::path::Path;

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            found.extend(files_holding(&p, needle));
        } else if t.is_file() {
            let bytes = fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

const MOUNTS: &str = "FROM base AS src
RUN mkdir /out && echo from-stage > /out/s.txt
FROM base
RUN --mount=target=/ctx cat /proc/sys/kernel/random/uuid > /stamp && cat /ctx/a.txt > /a-copy && ls /ctx > /ctx-list && (echo x > /ctx/w 2>/dev/null && echo writable || echo read-only) > /ctx-ro
RUN --mount=type=bind,from=src,source=/out,target=/mnt/s cat /mnt/s/s.txt > /s-copy
RUN --mount=type=bind,source=a.txt,target=/one.txt,rw echo changed > /one.txt && cat /one.txt > /one-copy
RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /cache-count
RUN --mount=source=sub,target=/sub cat /sub/s.txt > /sub-copy && (touch /sub/w 2>/dev/null && echo writable || echo read-only) > /sub-ro
RUN --mount=type=tmpfs,target=/scratch,size=1m echo t > /scratch/t && grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs > /tmpfs-ok
";

#[test]
fn run_mounts_bind_cache_and_tmpfs_and_leave_no_mount_point() {
    let w = World::new();
    let dir = context(
        &w,
        "mounts",
        MOUNTS,
        &[
            ("a.txt", "from-context\n"),
            ("sub/s.txt", "in-sub\n"),
            ("ignored.txt", "secret-ish\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let t = ["-t", "local/mounts"];
    build_ok(&w, &dir, &t);
    let cat = |f: &str| w.ok(&["run", "local/mounts", "cat", f]);
    assert_eq!(cat("/a-copy"), "from-context\n");
    let list = cat("/ctx-list");
    assert!(
        list.contains("a.txt") && !list.contains("ignored.txt"),
        "{list}"
    );
    assert_eq!(cat("/ctx-ro"), "read-only\n");
    assert_eq!(cat("/s-copy"), "from-stage\n");
    assert_eq!(cat("/one-copy"), "changed\n");
    assert_eq!(
        fs::read_to_string(dir.join("a.txt")).unwrap(),
        "from-context\n"
    );
    assert_eq!(cat("/cache-count"), "1\n");
    assert_eq!(cat("/tmpfs-ok"), "tmpfs\n");
    // A directory .dockerignore takes nothing from is bound as it is, read-only.
    assert_eq!(cat("/sub-copy"), "in-sub\n");
    assert_eq!(cat("/sub-ro"), "read-only\n");
    assert!(!dir.join("sub/w").exists());
    // The mount points (and the parents made for them) are in no layer.
    let left = w.ok(&[
        "run",
        "local/mounts",
        "sh",
        "-c",
        "for p in /ctx /mnt /one.txt /var /scratch /sub; do test -e $p && echo $p; done; true",
    ]);
    assert_eq!(left, "", "mount points left in the image");

    // The bind mount's content is in the key: an ignored file changes
    // nothing, a bound one re-runs the step.
    let stamp = cat("/stamp");
    fs::write(dir.join("ignored.txt"), "changed").unwrap();
    build_ok(&w, &dir, &t);
    assert_eq!(cat("/stamp"), stamp);
    fs::write(dir.join("a.txt"), "edited\n").unwrap();
    build_ok(&w, &dir, &t);
    assert_ne!(cat("/stamp"), stamp);
    assert_eq!(cat("/a-copy"), "edited\n");

    // The cache mount outlives builds (and --no-cache) until builder prune.
    build_ok(&w, &dir, &["-t", "local/mounts", "--no-cache"]);
    // Three runs: the first, the one after a.txt changed, this one.
    assert_eq!(cat("/cache-count"), "3\n");
    let mounts = w.root().join("build/mounts");
    assert!(fs::read_dir(&mounts).unwrap().count() > 0);
    w.ok(&["builder", "prune"]);
    assert!(
        fs::read_dir(&mounts).map_or(true, |d| d.count() == 0),
        "builder prune removes the cache mounts"
    );
    build_ok(&w, &dir, &["-t", "local/mounts", "--no-cache"]);
    assert_eq!(cat("/cache-count"), "1\n");
}

#[test]
fn a_cache_mount_from_a_stage_starts_with_its_files_once() {
    let w = World::new();
    let dir = context(
        &w,
        "cachefrom",
        "FROM base AS seed
RUN mkdir -p /seed/sub && echo seeded > /seed/sub/f && chown 7:8 /seed/sub/f
FROM base
RUN --mount=type=cache,id=c1,target=/c,from=seed,source=/seed cat /c/sub/f > /first && stat -c '%u:%g' /c/sub/f > /owner && echo more >> /c/sub/f
RUN --mount=type=cache,id=c1,target=/c,from=seed,source=/seed cat /c/sub/f > /second
",
        &[],
    );
    build_ok(&w, &dir, &["-t", "local/cachefrom"]);
    let cat = |f: &str| w.ok(&["run", "local/cachefrom", "cat", f]);
    assert_eq!(cat("/first"), "seeded\n");
    // With the seed's owners, as BuildKit shows them.
    assert_eq!(cat("/owner"), "7:8\n");
    // The same cache, already made: what the step before wrote, not the seed again.
    assert_eq!(cat("/second"), "seeded\nmore\n");
    // The seed stage itself is unchanged by the writes into the cache.
    build_ok(&w, &dir, &["-t", "local/seed", "--target", "seed"]);
    assert_eq!(
        w.ok(&["run", "local/seed", "cat", "/seed/sub/f"]),
        "seeded\n"
    );
    // A source that is a file is refused.
    let dir = context(
        &w,
        "cachefromfile",
        "FROM base AS seed\nRUN echo x > /x\nFROM base\nRUN --mount=type=cache,target=/c,from=seed,source=/x true\n",
        &[],
    );
    let out = crate::build::build(&w, &dir, &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("source \"/x\" is not a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn secrets_reach_the_step_that_mounts_them_and_nothing_else() {
    let w = World::new();
    let secret = "s3cr3t-b9f1e7";
    let src = w.dir.path().join("token");
    fs::write(&src, secret).unwrap();
    let dir = context(
        &w,
        "secrets",
        "FROM base
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /dev/null && stat -c '%a %u' /run/secrets/tok > /secret-mode && (echo x > /run/secrets/tok 2>/dev/null && echo writable || echo read-only) > /secret-ro && ls /proc/self/fd/ > /fds
RUN --mount=type=secret,id=tok,env=TOK,required echo \"${TOK%???????}\" > /env-head
RUN --mount=type=secret,id=tok,target=/etc/key,mode=0440,uid=1000 stat -c '%a %u' /etc/key > /key-mode
RUN --mount=type=secret,id=missing echo fine > /missing-ok
RUN (cat /run/secrets/tok 2>/dev/null || echo unseen) > /later; env > /later-env
",
        &[],
    );
    let tok = format!("id=tok,src={}", src.display());
    build_ok(&w, &dir, &["-t", "local/secrets", "--secret", &tok]);
    let cat = |f: &str| w.ok(&["run", "local/secrets", "cat", f]);
    assert_eq!(cat("/secret-mode"), "400 0\n");
    assert_eq!(cat("/secret-ro"), "read-only\n");
    // No descriptor but stdio and ls's own directory.
    assert_eq!(cat("/fds"), "0\n1\n2\n3\n");
    // The variable holds it (the step keeps only its head: the whole
    // secret must be found nowhere below).
    assert_eq!(cat("/env-head"), "s3cr3t\n");
    assert_eq!(cat("/key-mode"), "440 1000\n");
    assert_eq!(cat("/missing-ok"), "fine\n");
    assert_eq!(cat("/later"), "unseen\n");
    assert!(!cat("/later-env").contains(secret));
    let left = w.ok(&[
        "run",
        "local/secrets",
        "sh",
        "-c",
        "test -e /run && echo /run; test -s /etc/key && echo /etc/key; true",
    ]);
    assert_eq!(left, "", "secret mount points left in the image");
    // Not in any layer, config, cache record or other file of the state root.
    assert_eq!(
        files_holding(&w.root(), secret.as_bytes()),
        Vec::<String>::new()
    );
    // The secret's content is not in the key: a new value is still cached.
    fs::write(&src, "other-value").unwrap();
    let log = build_ok(&w, &dir, &["-t", "local/secrets", "--secret", &tok]);
    assert!(!log.contains("DONE"), "every step cached:\n{log}");

    // Required and not given, or a bad --mount: one clear message, nothing tagged.
    fails(
        &w,
        "required",
        "FROM base\nRUN --mount=type=secret,id=nope,required=true true\n",
        &[],
        &["Dockerfile:2: RUN", "secret \"nope\" is required"],
    );
    fails(
        &w,
        "badmount",
        "FROM base\nRUN --mount=type=cache true\n",
        &[],
        &["Dockerfile:2: RUN", "--mount needs a target"],
    );
    fails(
        &w,
        "sshmount",
        "FROM base\nRUN --mount=type=ssh true\n",
        &[],
        &["Dockerfile:2: RUN", "type=ssh is not supported yet"],
    );
    let out = w.runner(&[
        "build",
        "--secret",
        "id=x,src=/nonexistent/file",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--secret id=x: /nonexistent/file"),
        "{}",
        stderr(&out)
    );
}
