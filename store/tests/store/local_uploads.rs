//! Uploads on the embedded local store: chunked appends into one data file,
//! a failed append that leaves no trace, one writer at a time, a finish by
//! a store that never saw the chunks (no cached hash, as after a restart),
//! and the mirror's early-verified put, whose hash runs ahead of its writes.

use std::str::FromStr;

use bytes::Bytes;
use futures::StreamExt;
use store::{Algorithm, Digest, Error, RepoName, Store, StoreConfig};

use crate::harness::{body, owned_body, read_back};

#[tokio::test]
async fn chunked_upload_survives_a_failed_append_and_finishes_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::local(dir.path());
    let store = Store::open(&config).await.unwrap();
    let repo = RepoName::from_str("a/b").unwrap();
    let id = store.start_upload(&repo).await.unwrap();

    assert_eq!(
        store
            .append_upload(&repo, &id, Some(0), None, body(&[b"hello ", b"wor"]))
            .await
            .unwrap(),
        9
    );
    // A body that fails half-way writes bytes past the offset, records nothing.
    let broken = body(&[b"GARBAGE-GARBAGE"]).chain(futures::stream::once(async {
        Err(std::io::Error::other("client went away"))
    }));
    let err = store
        .append_upload(&repo, &id, Some(9), None, broken)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BodyIncomplete { .. }), "{err}");
    assert_eq!(store.upload_offset(&repo, &id).await.unwrap(), 9);
    // A wrong start is refused with the real offset.
    let err = store
        .append_upload(&repo, &id, Some(3), None, body(&[b"x"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UploadOutOfOrder { offset: 9, .. }),
        "{err}"
    );
    assert_eq!(
        store
            .append_upload(&repo, &id, Some(9), None, body(&[b"ld"]))
            .await
            .unwrap(),
        11
    );

    // Another store on the same directory has no cached hash: it re-reads the
    // data file, which must hold exactly the acknowledged 11 bytes.
    let other = Store::open(&config).await.unwrap();
    let digest = Digest::of(Algorithm::Sha256, b"hello world");
    let wrong = Digest::of(Algorithm::Sha256, b"hello worldGARBAGE");
    let err = other.finish_upload(&repo, &id, &wrong).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // The mismatch cancelled the session; push again and finish with the truth.
    let id = store.start_upload(&repo).await.unwrap();
    store
        .append_upload(&repo, &id, Some(0), None, body(&[b"hello world"]))
        .await
        .unwrap();
    other.finish_upload(&repo, &id, &digest).await.unwrap();
    assert_eq!(read_back(&store, &digest).await, b"hello world");
    assert_eq!(store.blob_size(&repo, &digest).await.unwrap(), 11);

    // The session is over: a late chunk cannot write into the committed blob.
    let err = store
        .append_upload(&repo, &id, Some(11), None, body(&[b"late"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadUnknown { .. }), "{err}");
    assert_eq!(read_back(&store, &digest).await, b"hello world");
}

#[tokio::test]
async fn one_writer_at_a_time_per_upload() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(&StoreConfig::local(dir.path())).await.unwrap());
    let repo = RepoName::from_str("a/b").unwrap();
    let id = store.start_upload(&repo).await.unwrap();

    // The first writer's body stays open until we send its last piece.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    tx.send(Ok(Bytes::from_static(b"first "))).await.unwrap();
    let first = {
        let (store, repo, id) = (store.clone(), repo.clone(), id.clone());
        let body = tokio_stream_from(rx);
        tokio::spawn(async move { store.append_upload(&repo, &id, Some(0), None, body).await })
    };
    // Once its first piece is taken off the channel, the first writer holds
    // the upload (it locks before reading the body).
    let permit = tx.reserve().await.unwrap();
    let digest = Digest::of(Algorithm::Sha256, b"first second");
    let err = store
        .append_upload(&repo, &id, Some(0), None, body(&[b"intruder"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadBusy { offset: 0 }), "{err}");
    let err = store.finish_upload(&repo, &id, &digest).await.unwrap_err();
    assert!(matches!(err, Error::UploadBusy { .. }), "{err}");

    permit.send(Ok(Bytes::from_static(b"second")));
    drop(tx);
    assert_eq!(first.await.unwrap().unwrap(), 12);
    store.finish_upload(&repo, &id, &digest).await.unwrap();
    assert_eq!(read_back(&store, &digest).await, b"first second");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_local_file_is_moved_in_verified_or_copied_across_filesystems() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::local(dir.path())).await.unwrap();
    let repo = RepoName::from_str("a/b").unwrap();
    let blobs = dir.path().join("storage/blobs");

    // Same filesystem: moved, so the stored file is the very inode written.
    let data = b"downloaded layer bytes".repeat(1000);
    let digest = Digest::of(Algorithm::Sha256, &data);
    let file = dir.path().join("download");
    std::fs::write(&file, &data).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
    store.put_blob_file(&repo, &digest, &file).await.unwrap();
    assert!(!file.exists());
    let stored = blobs.join(format!("sha256/{}/{}", &digest.hex()[..2], digest.hex()));
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&stored).unwrap()),
        inode
    );
    assert_eq!(read_back(&store, &digest).await, data);
    assert_eq!(
        store.blob_size(&repo, &digest).await.unwrap(),
        data.len() as u64
    );

    // A file that does not match its digest is refused and removed.
    std::fs::write(&file, b"tampered").unwrap();
    let other = Digest::of(Algorithm::Sha256, b"what was announced");
    let err = store.put_blob_file(&repo, &other, &file).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!file.exists());
    assert!(matches!(
        store.blob_size(&repo, &other).await.unwrap_err(),
        Error::BlobUnknown { .. }
    ));

    // Another filesystem (tmpfs): copied, then removed.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let far = shm.path().join("download");
    let data = b"from another filesystem".repeat(100);
    let digest = Digest::of(Algorithm::Sha256, &data);
    std::fs::write(&far, &data).unwrap();
    store.put_blob_file(&repo, &digest, &far).await.unwrap();
    assert!(!far.exists());
    assert_eq!(read_back(&store, &digest).await, data);

    // Nothing is left in staging.
    let staging = dir.path().join("storage/staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_file_hashed_by_its_writer_is_moved_in_unread_and_verified_when_copied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::local(dir.path())).await.unwrap();
    let repo = RepoName::from_str("a/b").unwrap();

    // Same filesystem: moved in under the digest its writer computed.
    let data = b"a layer the runner wrote and hashed".repeat(1000);
    let digest = Digest::of(Algorithm::Sha256, &data);
    let file = dir.path().join("layer");
    std::fs::write(&file, &data).unwrap();
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
    store.put_hashed_file(&repo, &digest, &file).await.unwrap();
    assert!(!file.exists());
    let stored = dir.path().join(format!(
        "storage/blobs/sha256/{}/{}",
        &digest.hex()[..2],
        digest.hex()
    ));
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&stored).unwrap()),
        inode
    );
    assert_eq!(read_back(&store, &digest).await, data);
    assert_eq!(
        store.blob_size(&repo, &digest).await.unwrap(),
        data.len() as u64
    );

    // Another filesystem: the copy is an upload, verified as any other, so
    // a wrong digest is still refused there.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let far = shm.path().join("layer");
    std::fs::write(&far, b"not what the digest says").unwrap();
    let other = Digest::of(Algorithm::Sha256, b"what was announced");
    let err = store
        .put_hashed_file(&repo, &other, &far)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!far.exists());
}

/// 48 MiB in 256 KiB chunks: more than the writes may lag behind the hash.
fn big_blob() -> Vec<Bytes> {
    (0..192u32)
        .map(|i| {
            let chunk: Vec<u8> = (0..256 * 1024u32)
                .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
                .collect();
            Bytes::from(chunk)
        })
        .collect()
}

#[tokio::test]
async fn an_early_verified_put_says_so_before_it_returns_and_stores_only_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig::local(dir.path())).await.unwrap();
    let repo = RepoName::from_str("mirror/big").unwrap();
    let chunks = big_blob();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let digest = Digest::of(Algorithm::Sha256, &whole);
    let size = whole.len() as u64;

    // The right bytes: `verified` says true while the put still runs (its
    // last writes and the commit), and the blob reads back whole once it
    // returns.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let put = store.put_blob_early(
        &repo,
        &digest,
        Some(size),
        owned_body(chunks.clone()),
        Some(tx),
    );
    tokio::pin!(put);
    let verified = tokio::select! {
        verified = rx => verified,
        done = &mut put => panic!("the put returned ({done:?}) before saying whether the bytes verify"),
    };
    assert_eq!(verified, Ok(true));
    put.await.unwrap();
    assert_eq!(store.blob_size(&repo, &digest).await.unwrap(), size);
    assert!(
        read_back(&store, &digest).await == whole,
        "the stored bytes differ"
    );

    // Bytes that are not the digest's.
    let mut tampered = chunks.clone();
    tampered[150] = Bytes::from(vec![0u8; 256 * 1024]);
    let lie = Digest::of(Algorithm::Sha256, b"not these bytes");
    let err = refused_early(&store, &lie, size, owned_body(tampered)).await;
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    // The right bytes, one chunk short of the announced length.
    let short = owned_body(chunks[..chunks.len() - 1].to_vec());
    let err = refused_early(&store, &digest, size, short).await;
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    // A body that fails half-way.
    let broken = owned_body(chunks[..100].to_vec()).chain(futures::stream::once(async {
        Err(std::io::Error::other("the upstream went away"))
    }));
    let err = refused_early(&store, &digest, size, broken).await;
    assert!(matches!(err, Error::BodyIncomplete { .. }), "{err}");
}

/// Put `body` early as `digest` into a fresh repository: the put fails, its
/// caller is never told the bytes verified, and nothing is stored. The error.
async fn refused_early(
    store: &Store,
    digest: &Digest,
    size: u64,
    body: impl futures::Stream<Item = std::io::Result<Bytes>> + Send,
) -> Error {
    let repo = RepoName::from_str("mirror/refused").unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let err = store
        .put_blob_early(&repo, digest, Some(size), body, Some(tx))
        .await
        .unwrap_err();
    assert_ne!(rx.await, Ok(true), "told verified: {err}");
    let gone = store.blob_size(&repo, digest).await.unwrap_err();
    assert!(matches!(gone, Error::BlobUnknown { .. }), "{gone}");
    err
}
