//! `runner build`'s COPY flags beyond the basics: `--exclude` (patterns in
//! `.dockerignore`'s syntax, relative to each source) and `--parents`
//! (the source's parent directories kept, from the context root or a `/./`
//! pivot), from the context and from a stage.

use crate::build::{build_ok, context};
use crate::harness::*;

/// `ls -R` of `dir` in the image.
fn tree(w: &World, image: &str, dir: &str) -> String {
    w.ok(&["run", image, "sh", "-c", &format!("cd {dir} && ls -R")])
}

#[test]
fn copy_exclude_leaves_out_what_its_patterns_match() {
    let w = World::new();
    let dir = context(
        &w,
        "exclude",
        "FROM base AS stage\nRUN mkdir -p /o/d && touch /o/a.txt /o/b.log /o/d/c.log\n\
         FROM base\nCOPY --exclude=*.log --exclude=sub/tmp src/ /one/\nCOPY --exclude=**/*.log --from=stage /o /two/\n\
         COPY --exclude=*.md notes.md keep.txt /three/\n",
        &[
            ("src/a.txt", "a"),
            ("src/b.log", "b"),
            ("src/sub/c.log", "c"),
            ("src/sub/tmp/t", "t"),
            ("src/sub/d.txt", "d"),
            ("notes.md", "n"),
            ("keep.txt", "k"),
        ],
    );
    build_ok(&w, &dir, &["-t", "local/exclude"]);
    // `*.log` matches at the top only; `sub/tmp` takes what is under it.
    assert_eq!(
        tree(&w, "local/exclude", "/one"),
        ".:\na.txt\nsub\n\n./sub:\nc.log\nd.txt\n"
    );
    assert_eq!(tree(&w, "local/exclude", "/two"), ".:\na.txt\nd\n\n./d:\n");
    assert_eq!(tree(&w, "local/exclude", "/three"), ".:\nkeep.txt\n");
}

#[test]
fn copy_parents_keeps_the_source_directories() {
    let w = World::new();
    let dir = context(
        &w,
        "parents",
        "FROM base AS stage\nRUN mkdir -p /s/x/y && echo 1 > /s/x/y/f\n\
         FROM base\nCOPY --parents x/a.txt y/*.txt /p/\nCOPY --parents ./src/./pkg/b.txt /q/\n\
         COPY --parents dir/sub /r/\nCOPY --parents --from=stage /s/x/y/f /t/\nCOPY --parents=false x/a.txt /u/\n",
        &[
            ("x/a.txt", "a"),
            ("y/b.txt", "b"),
            ("y/c.md", "c"),
            ("src/pkg/b.txt", "pb"),
            ("dir/sub/z.txt", "z"),
        ],
    );
    std::fs::set_permissions(
        dir.join("x"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    build_ok(&w, &dir, &["-t", "local/parents"]);
    let img = "local/parents";
    assert_eq!(
        tree(&w, img, "/p"),
        ".:\nx\ny\n\n./x:\na.txt\n\n./y:\nb.txt\n"
    );
    assert_eq!(tree(&w, img, "/q"), ".:\npkg\n\n./pkg:\nb.txt\n");
    assert_eq!(
        tree(&w, img, "/r"),
        ".:\ndir\n\n./dir:\nsub\n\n./dir/sub:\nz.txt\n"
    );
    assert_eq!(
        tree(&w, img, "/t"),
        ".:\ns\n\n./s:\nx\n\n./s/x:\ny\n\n./s/x/y:\nf\n"
    );
    assert_eq!(tree(&w, img, "/u"), ".:\na.txt\n");
    // A kept parent has the source directory's own mode.
    assert_eq!(w.ok(&["run", img, "stat", "-c", "%a", "/p/x"]), "750\n");
}
