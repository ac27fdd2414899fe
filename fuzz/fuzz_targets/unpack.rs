//! Fuzzes the runner's layer unpacker with arbitrary bytes as a layer blob
//! (gzip, zstd or plain tar, detected as in a real pull).
//!
//! Each input is unpacked twice, once with overlayfs whiteouts and once
//! applying them, each time into `layer/` inside a fresh temp dir that also
//! holds a file and a directory beside it. Unpacking may fail, but must not
//! panic, must leave `layer/` a real directory, and must not touch anything
//! outside it: the temp dir's entries and the metadata and contents of the
//! neighbours are compared before and after.
//!
//! Plain (uncompressed) inputs get their tar header checksums recomputed
//! first: a mutated header would otherwise almost always fail the checksum,
//! and the fuzzer would never reach the unpacker's path handling. Temp dirs
//! live in /dev/shm when there is one: on a disk, directory churn makes this
//! target some 30 times slower.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use runner::image::digest::Digest;
use runner::image::unpack::{unpack_into, Whiteouts};

/// What a path looks like: type and mode, owner, size, mtime and, for a
/// file, its bytes.
type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, u64, i64, Vec<u8>)>;

/// Records `root` and everything under it, without following symlinks.
fn snapshot(root: &Path, skip: &Path, out: &mut Snapshot) {
    let m = fs::symlink_metadata(root).expect("stat");
    let bytes = if m.is_file() {
        fs::read(root).expect("read")
    } else {
        Vec::new()
    };
    out.insert(
        root.to_owned(),
        (m.mode(), m.uid(), m.gid(), m.size(), m.mtime(), bytes),
    );
    if m.is_dir() {
        for e in fs::read_dir(root).expect("list") {
            let p = e.expect("list").path();
            if p != skip {
                snapshot(&p, skip, out);
            }
        }
    }
}

/// Recomputes the checksum of each header of a plain tar archive, walking
/// headers by their octal size field; stops at the first it cannot follow.
fn fix_checksums(tar: &mut [u8]) {
    let mut offset = 0;
    while let Some(header) = tar.get_mut(offset..offset + 512) {
        if header.iter().all(|&b| b == 0) {
            return;
        }
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = std::str::from_utf8(&header[124..136])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches([' ', '\0']), 8).ok());
        let Some(blocks) = size.and_then(|s| usize::try_from(s.div_ceil(512)).ok()) else {
            return;
        };
        let Some(next) = blocks
            .checked_mul(512)
            .and_then(|n| n.checked_add(offset + 512))
        else {
            return;
        };
        offset = next;
    }
}

fn temp_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn unpack_once(data: &[u8], diff_id: &Digest, mode: Whiteouts) {
    let tmp = tempfile::tempdir_in(temp_root()).expect("temp dir");
    let layer = tmp.path().join("layer");
    fs::create_dir(&layer).expect("mkdir layer");
    fs::write(tmp.path().join("neighbour"), b"not yours").expect("write neighbour");
    fs::create_dir(tmp.path().join("sibling")).expect("mkdir sibling");
    fs::write(tmp.path().join("sibling/file"), b"not yours either").expect("write file");
    let mut before = Snapshot::new();
    snapshot(tmp.path(), &layer, &mut before);

    let _ = unpack_into(data, &layer, diff_id, mode);

    let m = fs::symlink_metadata(&layer).expect("layer/ is gone");
    assert!(m.is_dir(), "layer/ is no longer a directory");
    let mut after = Snapshot::new();
    snapshot(tmp.path(), &layer, &mut after);
    assert_eq!(before, after, "unpacking changed something outside layer/");
}

fuzz_target!(|data: &[u8]| {
    let mut data = data.to_vec();
    if !data.starts_with(&[0x1f, 0x8b]) && !data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        fix_checksums(&mut data);
    }
    let diff_id = runner::image::digest::sha256_of(b"");
    unpack_once(&data, &diff_id, Whiteouts::Overlay);
    unpack_once(&data, &diff_id, Whiteouts::Apply);
});
