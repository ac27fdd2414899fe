//! A blob through the mirror. Present in the repository: served from the
//! store. Stored for another repository: linked once the upstream confirms
//! it holds the same blob (a `HEAD`; content is never exposed by digest
//! alone). Missing: fetched once whatever the number of clients (single
//! flight), in a task of its own so a client that goes away does not stop
//! it, streamed into the store, which verifies the digest before the blob
//! becomes visible.
//!
//! The first client gets the bytes while they are stored (a tee), all but
//! the last chunk at once and that one only after the digest verified: a
//! blob whose bytes do not match never reaches a client whole, and is never
//! stored. Other clients wait for the fetch, then read the store.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use store::{Digest, Store};
use tokio::sync::{mpsc, oneshot};

use super::flight::Joined;
use super::{Mirror, MirrorError, Target, UpstreamError};

/// The largest blob fetched from an upstream (a bound against one that
/// never stops sending).
pub const MAX_BLOB_SIZE: u64 = 64 << 30;

/// Chunks buffered between the fetch and the first client.
const TEE_DEPTH: usize = 16;

/// Where the client reads the blob from.
pub enum BlobSource {
    /// The store (present, linked, or fetched while waiting).
    Store,
    /// The fetch as it runs: the size upstream announced (when it did) and
    /// the bytes; the stream fails if the digest does not verify.
    Tee {
        /// `Content-Length` of the upstream's answer.
        size: Option<u64>,
        /// The bytes.
        body: mpsc::Receiver<std::io::Result<Bytes>>,
    },
}

/// Something that holds the store and lives as long as the server (the
/// handlers' state): a fetch task keeps it alive.
pub type StoreHolder = Arc<dyn AsRef<Store> + Send + Sync>;

/// A store on its own as a [`StoreHolder`] (for `registry sync`).
pub struct OwnedStore(pub Store);

impl AsRef<Store> for OwnedStore {
    fn as_ref(&self) -> &Store {
        &self.0
    }
}

impl Mirror {
    /// Make `digest` of `t` readable, fetching it when missing; with `tee`,
    /// a fetch this call leads streams to the caller.
    pub async fn blob(
        &self,
        holder: StoreHolder,
        t: &Target,
        digest: &Digest,
        tee: bool,
    ) -> Result<BlobSource, MirrorError> {
        let store = (*holder).as_ref();
        let up = &t.upstream;
        match store.blob_size(&t.local, digest).await {
            Ok(_) => {
                up.count(|m| &m.hits, 1);
                return Ok(BlobSource::Store);
            }
            Err(store::Error::BlobUnknown { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if self.link(store, t, digest).await? {
            up.count(|m| &m.hits, 1);
            return Ok(BlobSource::Store);
        }
        let key = format!("blob {}@{digest}", t.local);
        let leader = match self.flights.join(key) {
            Joined::Follower(f) => {
                return f
                    .wait()
                    .await
                    .map(|()| BlobSource::Store)
                    .map_err(|e| up.failed(e))
            }
            Joined::Leader(leader) => leader,
        };
        up.count(|m| &m.misses, 1);
        let (started_tx, started) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let (body_tx, body) = mpsc::channel(TEE_DEPTH);
        let fetch = Fetch {
            holder: holder.clone(),
            t: t.clone(),
            digest: digest.clone(),
            tee: tee.then_some(body_tx),
        };
        tokio::spawn(async move {
            let outcome = fetch.run(started_tx).await;
            if let Err(e) = &outcome {
                tracing::warn!(
                    upstream = %fetch.t.upstream.name,
                    repository = %fetch.t.local,
                    digest = %fetch.digest,
                    reason = %e,
                    "mirror: blob fetch failed"
                );
            }
            leader.finish(outcome.clone());
            let _ = done_tx.send(outcome);
        });
        if tee {
            match started.await {
                Ok(Ok(size)) => return Ok(BlobSource::Tee { size, body }),
                Ok(Err(e)) => return Err(up.failed(e)),
                Err(_) => {}
            }
        }
        match done.await {
            Ok(Ok(())) => Ok(BlobSource::Store),
            Ok(Err(e)) => Err(up.failed(e)),
            Err(_) => Err(up.failed(UpstreamError::Unavailable {
                reason: "the fetch was abandoned".into(),
            })),
        }
    }

    /// Link a blob stored for another repository into `t.local`, once the
    /// upstream confirms it holds it with the same size.
    async fn link(&self, store: &Store, t: &Target, digest: &Digest) -> Result<bool, MirrorError> {
        if !store.has_blob(digest).await? {
            return Ok(false);
        }
        let head = match t
            .upstream
            .client
            .blob(&t.remote, digest, Method::HEAD)
            .await
        {
            Ok(head) => head,
            Err(UpstreamError::NotFound) => {
                return Err(t.upstream.failed(UpstreamError::NotFound));
            }
            Err(e) => return Err(t.upstream.failed(e)),
        };
        // The header itself: reqwest's content_length() of a HEAD is the empty body's.
        let size = head
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        for from in store.repos_holding_blob(digest, 8).await? {
            if let Some(size) = size {
                if store.blob_size(&from, digest).await.ok() != Some(size) {
                    continue;
                }
            }
            if store.mount_blob(&t.local, digest, &from).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// One blob fetch, in its own task.
struct Fetch {
    holder: StoreHolder,
    t: Target,
    digest: Digest,
    tee: Option<mpsc::Sender<std::io::Result<Bytes>>>,
}

impl Fetch {
    /// GET the blob and store it; `started` gets the announced size once
    /// the upstream answered (or the error).
    async fn run(
        &self,
        started: oneshot::Sender<Result<Option<u64>, UpstreamError>>,
    ) -> Result<(), UpstreamError> {
        let up = &self.t.upstream;
        let response = match up
            .client
            .blob(&self.t.remote, &self.digest, Method::GET)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = started.send(Err(e.clone()));
                return Err(e);
            }
        };
        let size = response.content_length();
        if size.is_some_and(|s| s > MAX_BLOB_SIZE) {
            let e = UpstreamError::TooLarge {
                limit: MAX_BLOB_SIZE as usize,
            };
            let _ = started.send(Err(e.clone()));
            return Err(e);
        }
        let _ = started.send(Ok(size));
        // The last chunk seen, held back from the client until the digest verified.
        let held: Arc<Mutex<Option<Bytes>>> = Arc::default();
        let tee = self.tee.clone();
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = {
            let held = held.clone();
            let seen = seen.clone();
            response.bytes_stream().then(move |chunk| {
                let held = held.clone();
                let tee = tee.clone();
                let seen = seen.clone();
                async move {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    let total = seen
                        .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
                        + chunk.len() as u64;
                    if total > MAX_BLOB_SIZE {
                        return Err(std::io::Error::other(
                            "the upstream's blob is over the bound",
                        ));
                    }
                    let previous = held.lock().expect("held lock").replace(chunk.clone());
                    if let (Some(tee), Some(previous)) = (tee, previous) {
                        // A client that went away does not stop the fetch.
                        let _ = tee.send(Ok(previous)).await;
                    }
                    Ok(chunk)
                }
            })
        };
        let store = (*self.holder).as_ref();
        let stored = store
            .put_blob(&self.t.local, &self.digest, size, Box::pin(body))
            .await;
        let fetched = seen.load(std::sync::atomic::Ordering::Relaxed);
        up.count(|m| &m.bytes, fetched);
        let outcome = match stored {
            Ok(()) => Ok(()),
            Err(store::Error::DigestMismatch { actual, .. }) => Err(UpstreamError::Invalid {
                what: format!("the blob's bytes are {actual}, not {}", self.digest),
            }),
            Err(store::Error::SizeMismatch { .. }) => Err(UpstreamError::Invalid {
                what: "the blob's length is not the one announced".into(),
            }),
            Err(e) => Err(UpstreamError::Unavailable {
                reason: format!("storing the blob failed: {e}"),
            }),
        };
        if let Some(tee) = &self.tee {
            let last = held.lock().expect("held lock").take();
            match (&outcome, last) {
                (Ok(()), Some(last)) => {
                    let _ = tee.send(Ok(last)).await;
                }
                (Ok(()), None) => {}
                (Err(e), _) => {
                    let _ = tee.send(Err(std::io::Error::other(e.to_string()))).await;
                }
            }
        }
        outcome
    }
}
