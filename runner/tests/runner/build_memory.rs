//! The layers below a build step: the ones the build itself just wrote are
//! unpacked in memory (a tmpfs of the build's own, detached when it ends),
//! the others in the layer store. Whiteouts and opaque directories of such
//! a layer hide what they hide from the later steps; nothing stays mounted
//! or behind; `runner run` of the image unpacks them into the layer store
//! when it needs them; without a tmpfs, the layer store takes them all.

use crate::build::{build_ok, context, mounts_under, step_dirs};
use crate::harness::*;
use std::fs;

/// The unpacked layers in the layer store.
fn stored_layers(w: &World) -> usize {
    fs::read_dir(w.root().join("layers/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const DOCKERFILE: &str = "FROM base\nCOPY src/ /src/\n\
    RUN rm /src/gone && rm -rf /src/dir && mkdir /src/dir && echo new > /src/dir/new\n\
    RUN test ! -e /src/gone && ls -A /src/dir > /seen && cat /src/kept >> /seen\n";

const FILES: [(&str, &str); 4] = [
    ("src/kept", "kept\n"),
    ("src/gone", "gone\n"),
    ("src/dir/old", "old\n"),
    ("src/dir/older", "older\n"),
];

#[test]
fn a_builds_own_layers_are_unpacked_in_memory_for_its_later_steps() {
    let w = World::new();
    let dir = context(&w, "memory", DOCKERFILE, &FILES);
    build_ok(&w, &dir, &["-t", "local/memory"]);
    // The COPY layer and the first RUN's were read by later steps from
    // memory: only the base is in the layer store.
    assert_eq!(stored_layers(&w), 1);
    assert_eq!(mounts_under(&w.root()), 0, "the build's tmpfs is detached");
    assert!(step_dirs(&w).is_empty(), "{:?}", step_dirs(&w));
    assert_eq!(
        w.ok(&["run", "local/memory", "cat", "/seen"]),
        "new\nkept\n"
    );
    // `runner run` unpacked the image's layers it lacked.
    assert_eq!(stored_layers(&w), 4);
}

#[test]
fn without_a_tmpfs_the_layer_store_takes_a_builds_own_layers() {
    let w = World::new();
    let dir = context(&w, "disk", DOCKERFILE, &FILES);
    let out = w
        .cmd(&["build", "--progress", "plain", "-t", "local/disk"])
        .arg(&dir)
        .env("STRATA_BUILD_SCRATCH", "disk")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The base, the COPY layer and the first RUN's.
    assert_eq!(stored_layers(&w), 3);
    assert_eq!(mounts_under(&w.root()), 0);
    assert_eq!(w.ok(&["run", "local/disk", "cat", "/seen"]), "new\nkept\n");
}
