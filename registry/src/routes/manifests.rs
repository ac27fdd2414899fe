//! `/v2/<name>/manifests/<reference>`: read, push and delete. A pushed body
//! is read whole within a deadline, each byte taken from the shared budget
//! of manifest bodies as it arrives.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use store::{Reference, RepoName, Store, Tag};

use super::request::{content_length, header_str, Query, DRAIN};
use super::responses::{ManifestContent, ManifestCreated};
use super::AppState;
use crate::error::{body_error, ApiError, Code};

/// `GET`/`HEAD`: the manifest's headers, and for a GET its bytes.
pub(super) async fn get_manifest(
    store: &Store,
    repo: &RepoName,
    reference: &Reference,
    with_body: bool,
) -> Result<Response, ApiError> {
    let m = store.manifest(repo, reference, with_body).await?;
    Ok(ManifestContent {
        digest: &m.digest,
        media_type: &m.media_type,
        size: m.size,
        bytes: m.bytes,
    }
    .into_response())
}

/// A reference that is neither a tag nor a digest: reads find no manifest
/// (404, as distribution answers); writes get the parse error (400).
pub(super) fn bad_reference(reference: &str, read: bool) -> ApiError {
    if read {
        ApiError::new(Code::ManifestUnknown).detail(format!(
            "{reference:?} is neither a valid tag nor a valid digest"
        ))
    } else {
        reference
            .parse::<Reference>()
            .err()
            .map_or_else(|| ApiError::new(Code::ManifestInvalid), ApiError::from)
    }
}

/// How long a manifest body's next bytes may wait for a share of the budget.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Read a manifest body of at most `limit` bytes, each byte taken from the
/// shared budget as it arrives, the whole body within the configured time.
async fn read_manifest(
    state: &AppState,
    body: Body,
    h: &HeaderMap,
    limit: usize,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let deadline = crate::limits::deadline(state.manifest_body_timeout);
    let mut stream = body.into_data_stream();
    if let Some(size) = content_length(h)?.filter(|&n| n > limit as u64) {
        drain(&mut stream, deadline).await;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        return Err(store::Error::ManifestTooLarge { size, limit }.into());
    }
    let mut held = None;
    let mut buf = BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(ApiError::new(Code::ManifestInvalid)
                    .status(StatusCode::REQUEST_TIMEOUT)
                    .detail(format!(
                        "the manifest did not arrive within {} s",
                        state.manifest_body_timeout.as_secs()
                    )))
            }
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(|e| {
                let e = std::io::Error::other(e);
                body_error(Code::ManifestInvalid, &e).detail(format!("request body: {e}"))
            })?,
        };
        if buf.len() + chunk.len() > limit {
            let size = buf.len() + chunk.len();
            drop(held);
            drain(&mut stream, deadline).await;
            return Err(store::Error::ManifestTooLarge { size, limit }.into());
        }
        // Waiting for a share is short: under a flood, refusing fast frees
        // the connection, and the client retries after `Retry-After`.
        let wait = deadline.min(tokio::time::Instant::now() + BUDGET_WAIT);
        state
            .manifest_budget
            .take(&mut held, chunk.len(), wait)
            .await
            .map_err(|_| {
                ApiError::new(Code::Unavailable)
                    .detail("too many manifest bodies in flight; retry later")
                    .header(header::RETRY_AFTER, "1")
            })?;
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), held))
}

/// Read and drop what is left of a refused body (up to a bound, until
/// `deadline`), so the client reads our error instead of a connection reset.
async fn drain(stream: &mut axum::body::BodyDataStream, deadline: tokio::time::Instant) {
    let mut seen = 0;
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN {
                break;
            }
        }
    })
    .await;
}

/// `PUT`: store the manifest under `reference` and the `tag` parameters.
pub(super) async fn put_manifest(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = store::manifest::MAX_MANIFEST_SIZE;
    let tags = query
        .all("tag")
        .map(str::parse)
        .collect::<Result<Vec<Tag>, _>>()?;
    // The budget share is held until the manifest is stored.
    let (bytes, _budget) = read_manifest(state, body, h, limit).await?;
    let put = state
        .store
        .put_manifest(
            repo,
            reference,
            header_str(h, header::CONTENT_TYPE),
            bytes,
            &tags,
        )
        .await?;
    Ok(ManifestCreated {
        repo,
        digest: &put.digest,
        subject: put.subject.as_ref(),
        tags: &put.tags,
    }
    .into_response())
}

/// `DELETE`: untag, or delete by digest.
pub(super) async fn delete_manifest(
    store: &Store,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    store.delete_manifest(repo, reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
