//! What a crash leaves on a local store, and the start-up sweep that clears
//! it: manifest bytes are staged in a locked file and moved into place, so a
//! killed writer leaves only an unlocked staging file (or, from an earlier
//! version, a `<hex>#<n>` file beside the blobs). The sweep removes those and
//! never a file a live writer holds.

use std::fs::File;
use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;
use store::{Digest, Reference, RepoName, Store, StoreConfig};

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn manifest_pushes_leave_no_staging_and_crash_debris_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::local(dir.path());
    config.allow_sparse = true;
    let store = Store::open(&config).await.unwrap();
    let storage = dir.path().join("storage");
    let repo = RepoName::from_str("team/app").unwrap();

    let bytes = Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001","size":2},"layers":[]}"#,
    );
    let media = Some("application/vnd.oci.image.manifest.v1+json");
    for tag in ["v1", "v2"] {
        // The second push finds the bytes stored and writes nothing.
        let put = store
            .put_manifest(
                &repo,
                &Reference::from_str(tag).unwrap(),
                media,
                bytes.clone(),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(put.digest, Digest::of(store::Algorithm::Sha256, &bytes));
    }
    let digest = Digest::of(store::Algorithm::Sha256, &bytes);
    let blob = format!("blobs/sha256/{}/{}", &digest.hex()[..2], digest.hex());
    assert_eq!(files_under(&storage), vec![blob.clone()]);
    assert_eq!(std::fs::read(storage.join(&blob)).unwrap(), bytes);

    // What a killed process leaves: a staging file nobody holds, and a
    // partial file of the backend's own from an earlier version.
    std::fs::create_dir_all(storage.join("staging")).unwrap();
    std::fs::write(storage.join("staging/dead"), b"{\"half").unwrap();
    let partial = format!("{blob}#1");
    std::fs::write(storage.join(&partial), b"{\"half").unwrap();
    // A writer still at work holds its file locked.
    let live = File::create(storage.join("staging/live")).unwrap();
    live.lock().unwrap();

    let purged = store.purge_orphans(store::now() - 3600).await.unwrap();
    assert_eq!(purged, 2);
    assert_eq!(
        files_under(&storage),
        vec![blob.clone(), "staging/live".to_string()]
    );
    drop(live);
    assert_eq!(store.purge_orphans(store::now() - 3600).await.unwrap(), 1);
    assert_eq!(files_under(&storage), vec![blob]);
}
