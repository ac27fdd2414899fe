//! A blob through the mirror. Present in the repository: served from the
//! store. Stored for another repository: linked once the upstream confirms
//! it holds the same blob (a `HEAD`; content is never exposed by digest
//! alone). Missing: fetched once whatever the number of clients (single
//! flight), in a task of its own so a client that goes away does not stop
//! it, streamed into the store, which verifies the digest before the blob
//! becomes visible.
//!
//! The first client gets the bytes while they are stored (a tee), all but
//! the last chunk at once and that one as soon as the store hashed the
//! bytes and found them right: before its durable commit (fsync, metadata),
//! which runs on in the fetch task. A blob whose bytes do not match never
//! reaches a client whole, and is never stored; it becomes visible only
//! once committed. Other clients wait for the fetch, then read the store.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
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
        let mut fetch = Fetch {
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
        &mut self,
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
        let end: Parked = Arc::default();
        let tee = Tee {
            upstream: response.bytes_stream().boxed(),
            buf: BytesMut::new(),
            held: None,
            ended: false,
            seen: 0,
            upstream_of: self.t.upstream.clone(),
            client: self.tee.take().map(|tx| TeeSender(Some(tx))),
            end: end.clone(),
        };
        let body = futures::stream::unfold(tee, Tee::next);
        let store = (*self.holder).as_ref();
        let (verified_tx, verified) = oneshot::channel();
        let put = store.put_blob_early(
            &self.t.local,
            &self.digest,
            size,
            Box::pin(body),
            Some(verified_tx),
        );
        // The client's last chunk goes as soon as the store hashed the bytes
        // and found them right, while the commit runs on.
        let release_early = async {
            if let Ok(true) = verified.await {
                release(&end).await;
            }
        };
        let (stored, ()) = tokio::join!(put, release_early);
        if stored.is_ok() {
            // When the store knew the digest only at the commit.
            release(&end).await;
        } else {
            // Not verified, or not stored: the client's transfer fails.
            drop(end.lock().expect("parked lock").take());
        }
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
        outcome
    }
}

/// Upstream chunks are joined up to this size before they go on: fewer,
/// larger writes and channel hand-offs.
const CHUNK: usize = 256 << 10;

/// The last chunk and the client's end, parked once the upstream's body
/// ended, until the store verified the bytes.
type Parked = Arc<Mutex<Option<(Option<Bytes>, TeeSender)>>>;

/// The upstream's body on its way into the store, forwarded to the first
/// client as it goes: every chunk but the last at once; the last is parked
/// and released ([`release`]) once the store hashed the bytes and found
/// them right, before its durable commit (fsync, metadata), so the client
/// gets the blob at the upstream's pace. One hash, the store's.
struct Tee {
    upstream: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    /// Bytes read but not yet passed on (under [`CHUNK`]).
    buf: BytesMut,
    /// The last chunk passed on, held back from the client.
    held: Option<Bytes>,
    /// The upstream's body ended (or failed).
    ended: bool,
    /// Bytes read from the upstream so far.
    seen: u64,
    /// Whose `fetched_bytes` counter the bytes go to, as they arrive.
    upstream_of: Arc<super::Upstream>,
    /// The first client, while it has not had the whole blob or an error.
    client: Option<TeeSender>,
    end: Parked,
}

impl Tee {
    /// The next chunk for the store.
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Tee)> {
        loop {
            if self.ended {
                return None;
            }
            match self.upstream.next().await {
                Some(Ok(chunk)) => {
                    self.seen += chunk.len() as u64;
                    self.upstream_of.count(|m| &m.bytes, chunk.len() as u64);
                    if self.seen > MAX_BLOB_SIZE {
                        self.ended = true;
                        self.fail("the upstream's blob is over the bound").await;
                        return Some((
                            Err(std::io::Error::other(
                                "the upstream's blob is over the bound",
                            )),
                            self,
                        ));
                    }
                    let out = if self.buf.is_empty() && chunk.len() >= CHUNK {
                        chunk
                    } else {
                        self.buf.extend_from_slice(&chunk);
                        if self.buf.len() < CHUNK {
                            continue;
                        }
                        self.buf.split().freeze()
                    };
                    self.pass(out.clone()).await;
                    return Some((Ok(out), self));
                }
                Some(Err(e)) => {
                    self.ended = true;
                    self.fail("the upstream's body failed").await;
                    return Some((Err(std::io::Error::other(e)), self));
                }
                None => {
                    self.ended = true;
                    let rest = (!self.buf.is_empty()).then(|| self.buf.split().freeze());
                    if let Some(rest) = &rest {
                        self.pass(rest.clone()).await;
                    }
                    if let Some(client) = self.client.take() {
                        *self.end.lock().expect("parked lock") = Some((self.held.take(), client));
                    }
                    return rest.map(|rest| (Ok(rest), self));
                }
            }
        }
    }

    /// Hold `chunk` back, forwarding the one held before.
    async fn pass(&mut self, chunk: Bytes) {
        let Some(previous) = self.held.replace(chunk) else {
            return;
        };
        let gone = match self.client.as_ref().and_then(|c| c.0.as_ref()) {
            // A client that went away does not stop the fetch.
            Some(tx) => tx.send(Ok(previous)).await.is_err(),
            None => false,
        };
        if gone {
            if let Some(mut client) = self.client.take() {
                client.0.take();
            }
        }
    }

    /// End the client's transfer with an error.
    async fn fail(&mut self, why: &str) {
        if let Some(mut client) = self.client.take() {
            if let Some(tx) = client.0.take() {
                let _ = tx.send(Err(std::io::Error::other(why.to_owned()))).await;
            }
        }
    }
}

/// Send the parked last chunk to the client and end its transfer cleanly
/// (once: a second call finds nothing parked).
async fn release(end: &Parked) {
    let parked = end.lock().expect("parked lock").take();
    if let Some((last, mut client)) = parked {
        if let (Some(last), Some(tx)) = (last, client.0.take()) {
            let _ = tx.send(Ok(last)).await;
        }
    }
}

/// The first client's end of the tee. Dropped before the blob was whole and
/// verified (the store stopped reading: a write error, a length over the
/// announced one), it ends the client's transfer with an error, never a
/// clean end of a short body.
struct TeeSender(Option<mpsc::Sender<std::io::Result<Bytes>>>);

impl Drop for TeeSender {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            tokio::spawn(async move {
                let _ = tx
                    .send(Err(std::io::Error::other("the blob's fetch failed")))
                    .await;
            });
        }
    }
}
