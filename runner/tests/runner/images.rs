//! Pull and unpack: layers once per digest, whiteouts, hostile tars, indexes,
//! resumed downloads, the shared store and prune.

use crate::harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

#[test]
fn whiteout_and_opaque_directory_hide_lower_content() {
    let w = World::new();
    let base = busybox_layer(
        Compression::Gzip,
        vec![
            Entry::Dir("data/"),
            file("data/gone.txt", b"x"),
            file("data/kept.txt", b"x"),
            Entry::Dir("opq/"),
            file("opq/old.txt", b"x"),
        ],
    );
    let upper = layer(
        Compression::Zstd,
        &[
            Entry::Dir("data/"),
            file("data/.wh.gone.txt", b""),
            Entry::Dir("opq/"),
            file("opq/.wh..wh..opq", b""),
            file("opq/new.txt", b"x"),
        ],
    );
    push_image(
        &w.reg,
        "layered",
        "latest",
        &[&base, &upper],
        default_config(),
    );
    for userns in [None, Some("--userns")] {
        let mut args = vec!["run"];
        args.extend(userns);
        let img = w.image("layered");
        args.extend([img.as_str(), "ls", "/data", "/opq"]);
        assert_eq!(
            w.ok(&args),
            "/data:\nkept.txt\n\n/opq:\nnew.txt\n",
            "{userns:?}"
        );
    }
}

fn pull_must_fail(w: &World, repo: &str, malicious: Layer, expected: &str) {
    let base = busybox_layer(Compression::Gzip, vec![]);
    push_image(
        &w.reg,
        repo,
        "latest",
        &[&base, &malicious],
        default_config(),
    );
    let out = w.runner(&["run", &w.image(repo), "true"]);
    assert_eq!(out.status.code(), Some(125), "{repo}: {}", stderr(&out));
    assert!(stderr(&out).contains(expected), "{repo}: {}", stderr(&out));
    assert!(!w
        .root()
        .join("layers/sha256")
        .join(&malicious.diff_id[7..])
        .exists());
    let leftovers: Vec<_> = fs::read_dir(w.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{repo}: left behind {leftovers:?}");
}

#[test]
fn unpack_refuses_path_traversal_and_leaves_nothing_behind() {
    let w = World::new();
    let cases = [
        (
            "dotdot",
            layer(Compression::Gzip, &[file("../escaped", b"x")]),
            "'..' component",
        ),
        (
            "absolute",
            layer(Compression::Gzip, &[file("/abs", b"x")]),
            "absolute path",
        ),
        (
            "symlink",
            layer(
                Compression::Gzip,
                &[
                    Entry::Dir("a/"),
                    Entry::Symlink("a/esc".into(), "../../../etc".into()),
                ],
            ),
            "symlink target escapes",
        ),
        (
            "hardlink",
            layer(
                Compression::Gzip,
                &[Entry::Hardlink(
                    "passwd".into(),
                    "../../../../etc/passwd".into(),
                )],
            ),
            "hardlink target escapes",
        ),
        (
            "parent",
            layer(
                Compression::Gzip,
                &[
                    Entry::Symlink("link".into(), "/tmp".into()),
                    file("link/planted", b"x"),
                ],
            ),
            "parent directory is a symlink",
        ),
    ];
    for (repo, malicious, expected) in cases {
        pull_must_fail(&w, repo, malicious, expected);
    }
    assert!(!Path::new("/tmp/planted").exists());
}

#[test]
fn layers_are_unpacked_once_and_shared_between_images() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let a = layer(Compression::Gzip, &[file("a.txt", b"a")]);
    let b = layer(Compression::Zstd, &[file("b.txt", b"b")]);
    push_image(&w.reg, "one", "latest", &[&base, &a], default_config());
    push_image(&w.reg, "two", "latest", &[&base, &b], default_config());
    // A pull unpacks the layers, as Docker's does, so the first run starts at once.
    w.ok(&["pull", &w.image("one")]);
    assert_eq!(w.layer_dirs().len(), 2);
    let base_dir = w.root().join("layers/sha256").join(&base.diff_id[7..]);
    let inode = fs::metadata(&base_dir).unwrap().ino();
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
    assert_eq!(fs::metadata(&base_dir).unwrap().ino(), inode);
    assert_eq!(w.ok(&["run", &w.image("two"), "cat", "/b.txt"]), "b");
    assert_eq!(fs::metadata(&base_dir).unwrap().ino(), inode);
    assert_eq!(w.layer_dirs().len(), 3);
    // Writes go to the container's upper dir, never into a shared layer.
    w.ok(&[
        "run",
        &w.image("one"),
        "sh",
        "-c",
        "echo changed > /a.txt; rm /bin/true",
    ]);
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
    // rmi + prune drop what only "two" used.
    w.ok(&["rmi", &w.image("two")]);
    w.ok(&["prune"]);
    assert_eq!(w.layer_dirs().len(), 2);
    assert!(w.ok(&["images"]).contains("/one:latest"));
}

/// Blob files in the runner's store (`<root>/store/storage/blobs/<alg>/<2 hex>/<hex>`),
/// as digests.
fn stored_blobs(w: &World) -> Vec<String> {
    let alg = w.root().join("store/storage/blobs/sha256");
    let mut out: Vec<String> = fs::read_dir(&alg)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|prefix| fs::read_dir(prefix.path()).unwrap().flatten())
        .map(|blob| format!("sha256:{}", blob.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

#[test]
fn images_live_in_the_store_once_and_rmi_prune_frees_their_blobs() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let a = layer(Compression::Gzip, &[file("a.txt", b"a")]);
    let b = layer(Compression::Zstd, &[file("b.txt", b"b")]);
    let m_one = push_image(&w.reg, "one", "latest", &[&base, &a], default_config());
    let m_two = push_image(&w.reg, "two", "latest", &[&base, &b], default_config());
    // Pull, unpack and run in one invocation: the store's threads must be
    // gone before the sandbox clones (this used to hang).
    let out = runner_within(
        &w,
        &["run", &w.image("one"), "cat", "/a.txt"],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a");
    w.ok(&["pull", &w.image("two")]);
    assert_eq!(w.ok(&["run", &w.image("two"), "cat", "/b.txt"]), "b");
    // Two manifests, two configs and three layers: the shared base is kept once.
    let blobs = stored_blobs(&w);
    assert_eq!(blobs.len(), 7, "{blobs:?}");
    for digest in [&m_one, &m_two, &sha256(&base.blob), &sha256(&b.blob)] {
        assert!(blobs.contains(digest), "{digest} not in the store");
    }
    assert!(!w.root().join("blobs").exists() && !w.root().join("images").exists());
    // The store sweeps blobs idle for at least a whole second: let the pull's age.
    std::thread::sleep(Duration::from_millis(1100));
    w.ok(&["rmi", &w.image("two")]);
    let out = w.ok(&["prune"]);
    assert!(out.contains("removed 1 layers"), "{out}");
    let blobs = stored_blobs(&w);
    assert_eq!(blobs.len(), 4, "{blobs:?}");
    assert!(!blobs.contains(&m_two) && !blobs.contains(&sha256(&b.blob)));
    assert!(blobs.contains(&m_one) && blobs.contains(&sha256(&base.blob)));
    let images = w.ok(&["images"]);
    assert!(
        images.contains("/one:latest") && !images.contains("/two:"),
        "{images}"
    );
    assert_eq!(w.ok(&["run", &w.image("one"), "cat", "/a.txt"]), "a");
}

#[test]
fn pull_resolves_an_index_to_the_host_platform_and_verifies_digests() {
    let w = World::new();
    let amd = busybox_layer(Compression::Zstd, vec![file("arch", b"amd64")]);
    let arm = layer(Compression::Gzip, &[file("arch", b"arm64")]);
    let m_amd = push_image(&w.reg, "multi", "amd64", &[&amd], default_config());
    let m_arm = push_image(&w.reg, "multi", "arm64", &[&arm], default_config());
    let size = |tag: &str| {
        ureq::get(&format!("http://{}/v2/multi/manifests/{tag}", w.reg.addr))
            .set("Accept", "application/vnd.oci.image.manifest.v1+json")
            .call()
            .unwrap()
            .into_string()
            .unwrap()
            .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_arm, "size": size("arm64"), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_amd, "size": size("amd64"), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    put_manifest(
        &w.reg,
        "multi",
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    let out = w.ok(&["pull", &w.image("multi")]);
    assert!(out.contains(&m_amd), "{out}");
    assert_eq!(w.ok(&["run", &w.image("multi"), "cat", "/arch"]), "amd64");
    let out = w.runner(&["pull", "--platform", "linux/s390x", &w.image("multi")]);
    assert!(
        stderr(&out).contains("no matching manifest for linux/s390x"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn interrupted_download_resumes_with_range() {
    let w = World::new();
    let l = busybox_layer(Compression::Gzip, vec![]);
    push_image(&w.reg, "resume", "latest", &[&l], default_config());
    // The runner makes its (private) root, then the test plants a partial download.
    w.ok(&["images"]);
    let tmp = w.root().join("tmp");
    let partial = tmp.join(format!("sha256-{}.partial", &sha256(&l.blob)[7..]));
    // A corrupt first half proves the runner asked only for the rest:
    // a full re-download would have overwritten it.
    let half = l.blob.len() / 2;
    let mut corrupt = l.blob[..half].to_vec();
    corrupt[10] ^= 0xff;
    fs::write(&partial, &corrupt).unwrap();
    let out = w.runner(&["pull", &w.image("resume")]);
    assert!(stderr(&out).contains("hashed to"), "{}", stderr(&out));
    assert!(
        !partial.exists(),
        "a corrupt partial download must be discarded"
    );
    fs::write(&partial, &l.blob[..half]).unwrap();
    w.ok(&["pull", &w.image("resume")]);
    assert_eq!(
        w.ok(&["run", &w.image("resume"), "echo", "resumed"]),
        "resumed\n"
    );
}

/// Names under the runner's tmp dir of layers unpacked while downloading.
fn unpack_leftovers(w: &World) -> Vec<String> {
    fs::read_dir(w.root().join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("unpack-"))
        .collect()
}

#[test]
fn a_layer_unpacked_while_downloading_is_kept_only_when_both_digests_verify() {
    let w = World::new();
    let l = busybox_layer(Compression::Gzip, vec![]);
    // The config names another diff_id: the blob is fine, its content is not that layer.
    let lying = Layer {
        blob: l.blob.clone(),
        diff_id: sha256(b"some other layer"),
        media_type: l.media_type,
    };
    push_image(&w.reg, "lying", "latest", &[&lying], default_config());
    let out = w.runner(&["pull", &w.image("lying")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("diff_id mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(w.layer_dirs().is_empty(), "{:?}", w.layer_dirs());
    assert!(
        unpack_leftovers(&w).is_empty(),
        "{:?}",
        unpack_leftovers(&w)
    );

    // A download that fails its digest leaves no layer either, even though
    // its unpack (of a corrupt first half) ran alongside.
    let l = busybox_layer(Compression::Gzip, vec![file("honest.txt", b"yes")]);
    push_image(&w.reg, "honest", "latest", &[&l], default_config());
    let partial = w
        .root()
        .join("tmp")
        .join(format!("sha256-{}.partial", &sha256(&l.blob)[7..]));
    let mut corrupt = l.blob[..l.blob.len() / 2].to_vec();
    corrupt[10] ^= 0xff;
    fs::write(&partial, &corrupt).unwrap();
    let out = w.runner(&["pull", &w.image("honest")]);
    assert!(!out.status.success());
    assert!(w.layer_dirs().is_empty(), "{:?}", w.layer_dirs());
    assert!(
        unpack_leftovers(&w).is_empty(),
        "{:?}",
        unpack_leftovers(&w)
    );

    // The honest image then pulls, unpacked by the pull itself.
    w.ok(&["pull", &w.image("honest")]);
    assert_eq!(w.layer_dirs().len(), 1);
    assert_eq!(
        w.ok(&["run", &w.image("honest"), "echo", "verified"]),
        "verified\n"
    );
}

#[test]
fn unpack_preserves_links_special_files_ownership_modes_mtimes_and_xattrs() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let mut b = tar::Builder::new(Vec::new());
    fn add(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        data: &[u8],
        mode: u32,
        f: &dyn Fn(&mut tar::Header),
    ) {
        let mut h = header(kind, name, data.len() as u64, mode);
        f(&mut h);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    add(
        &mut b,
        tar::EntryType::Regular,
        "owned",
        b"data",
        0o4750,
        &|h| {
            h.set_uid(1000);
            h.set_gid(10);
            h.set_mtime(1_234_567_890);
        },
    );
    add(&mut b, tar::EntryType::Link, "hard", b"", 0o644, &|h| {
        set_link(h, "owned")
    });
    add(&mut b, tar::EntryType::Symlink, "soft", b"", 0o777, &|h| {
        set_link(h, "owned")
    });
    add(&mut b, tar::EntryType::Fifo, "fifo", b"", 0o640, &|_| {});
    add(&mut b, tar::EntryType::Char, "null", b"", 0o666, &|h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    });
    b.append_pax_extensions([("SCHILY.xattr.user.strata", &b"kept"[..])])
        .unwrap();
    add(
        &mut b,
        tar::EntryType::Regular,
        "tagged",
        b"x",
        0o600,
        &|_| {},
    );
    let tar = b.into_inner().unwrap();
    let special = Layer {
        diff_id: sha256(&tar),
        blob: tar,
        media_type: "application/vnd.oci.image.layer.v1.tar",
    };
    push_image(
        &w.reg,
        "special",
        "latest",
        &[&base, &special],
        default_config(),
    );
    let out = w.ok(&[
        "run",
        &w.image("special"),
        "stat",
        "-c",
        "%n %u %g %a %Y %F %h",
        "/owned",
        "/fifo",
    ]);
    assert_eq!(
        out,
        "/owned 1000 10 4750 1234567890 regular file 2\n/fifo 0 0 640 1700000000 fifo 1\n"
    );
    let dir = w.root().join("layers/sha256").join(&special.diff_id[7..]);
    let owned = fs::metadata(dir.join("owned")).unwrap();
    assert_eq!(fs::metadata(dir.join("hard")).unwrap().ino(), owned.ino());
    assert_eq!(fs::read_link(dir.join("soft")).unwrap(), Path::new("owned"));
    let null = fs::metadata(dir.join("null")).unwrap();
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    let mut value = [0u8; 16];
    let path =
        std::ffi::CString::new(dir.join("tagged").into_os_string().into_encoded_bytes()).unwrap();
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.strata".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(&value[..n.max(0) as usize], b"kept");
}

#[test]
fn concurrent_runs_on_a_fresh_root_share_one_unpack() {
    let w = World::new();
    let img = w.push_busybox("busybox", vec![]);
    w.ok(&["pull", &img]);
    let children: Vec<Child> = (0..4)
        .map(|i| {
            w.cmd(&["run", &img, "echo", &i.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{i}\n"));
    }
    assert_eq!(w.layer_dirs().len(), 1);
    let leftovers: Vec<_> = fs::read_dir(w.root().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn images_with_more_layers_than_one_mount_option_holds_run() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let extra: Vec<Layer> = (0..80)
        .map(|i| {
            layer(
                Compression::Plain,
                &[file(&format!("l{i}"), format!("{i}").as_bytes())],
            )
        })
        .collect();
    let mut all = vec![&base];
    all.extend(extra.iter());
    push_image(&w.reg, "tall", "latest", &all, default_config());
    assert_eq!(
        w.ok(&["run", &w.image("tall"), "cat", "/l0", "/l79"]),
        "079"
    );
}

/// rmi and prune right after a pull leave the blobs' bytes (the store keeps a
/// blob idle for less than a second) but no link to them: running the image
/// again must pull it again, not fail with "blob ... is not in the local store".
#[test]
fn an_image_removed_and_pruned_at_once_is_pulled_again_by_run() {
    let w = World::new();
    let base = busybox_layer(Compression::Gzip, vec![]);
    let a = layer(Compression::Gzip, &[file("a.txt", b"again")]);
    push_image(&w.reg, "again", "latest", &[&base, &a], default_config());
    w.ok(&["pull", &w.image("again")]);
    w.ok(&["rmi", &w.image("again")]);
    w.ok(&["prune"]);
    assert!(!w.ok(&["images"]).contains("/again:"));
    assert_eq!(w.ok(&["run", &w.image("again"), "cat", "/a.txt"]), "again");
    assert!(w.ok(&["images"]).contains("/again:latest"));
}
