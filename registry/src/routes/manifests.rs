//! `/v2/<name>/manifests/<reference>`: read, push and delete. A pushed body
//! is read whole within a deadline, each byte taken from the shared budget
//! of manifest bodies as it arrives.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use store::{Algorithm, Digest, Effects, Reference, RepoName, Store, Tag};

use super::request::{content_length, header_str, Query, DRAIN};
use super::responses::{ManifestContent, ManifestCreated};
use super::AppState;
use crate::error::{body_error, ApiError, Code};
use crate::events::{Actor, EventData, Kind};

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
/// Immutable tags may not move (the store checks inside the write), and
/// the push event goes to the outbox with it.
pub(super) async fn put_manifest(
    state: &AppState,
    actor: &Actor,
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
    let content_type = header_str(h, header::CONTENT_TYPE);
    let events = if state.events.is_empty() {
        Vec::new()
    } else {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        let media_type = store::manifest::parse(content_type, &bytes)
            .map(|p| p.media_type)
            .ok();
        let mut named: Vec<Option<String>> = tags.iter().map(|t| Some(t.to_string())).collect();
        match reference {
            Reference::Tag(t) => named.insert(0, Some(t.to_string())),
            Reference::Digest(_) if named.is_empty() => named.push(None),
            Reference::Digest(_) => {}
        }
        named
            .into_iter()
            .flat_map(|tag| {
                let data = EventData {
                    repository: repo.to_string(),
                    tag,
                    digest: Some(digest.to_string()),
                    media_type: media_type.clone(),
                    size: Some(bytes.len() as u64),
                    from: None,
                    ..EventData::default()
                };
                state.events.build(Kind::Push, actor, data)
            })
            .collect()
    };
    let lock = state.policy.tag_lock(repo.as_str());
    let effects = Effects {
        locked: lock.as_ref().map(|f| f as &(dyn Fn(&Tag) -> bool + Sync)),
        events: &events,
    };
    let put = state
        .store
        .put_manifest_with(repo, reference, content_type, bytes, &tags, effects)
        .await
        .map_err(|e| state.policy.refusal(repo.as_str(), e))?;
    if !events.is_empty() {
        state.events.wake();
    }
    Ok(ManifestCreated {
        repo,
        digest: &put.digest,
        subject: put.subject.as_ref(),
        tags: &put.tags,
    }
    .into_response())
}

/// `DELETE`: untag, or delete by digest; neither may remove an immutable tag.
pub(super) async fn delete_manifest(
    state: &AppState,
    actor: &Actor,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    let mut events = Vec::new();
    if state.events.wants(Kind::Delete) {
        // What a tag pointed to, for the event (a lookup, not the delete's own read).
        let found = state.store.manifest(repo, reference, false).await.ok();
        let data = EventData {
            repository: repo.to_string(),
            tag: match reference {
                Reference::Tag(t) => Some(t.to_string()),
                Reference::Digest(_) => None,
            },
            digest: found.as_ref().map(|m| m.digest.to_string()),
            media_type: found.as_ref().map(|m| m.media_type.clone()),
            size: found.as_ref().map(|m| m.size),
            from: None,
            ..EventData::default()
        };
        events = state.events.build(Kind::Delete, actor, data);
    }
    let lock = state.policy.tag_lock(repo.as_str());
    let effects = Effects {
        locked: lock.as_ref().map(|f| f as &(dyn Fn(&Tag) -> bool + Sync)),
        events: &events,
    };
    state
        .store
        .delete_manifest_with(repo, reference, effects)
        .await
        .map_err(|e| state.policy.refusal(repo.as_str(), e))?;
    if !events.is_empty() {
        state.events.wake();
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// After a GET of a manifest: its pull time, noted in memory for
/// `[[retention]]` `keep_pulled_within` (written in batches; a HEAD only
/// checks, so it is not a pull); and the pull event, for webhooks that want
/// pulls (its own small write: a pull changes nothing to commit it with).
pub(super) async fn pulled(
    state: &AppState,
    actor: &Actor,
    repo: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
) {
    if let Some(digest) =
        header_str(headers, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
    {
        state.pruner.pulled(repo, &digest);
    }
    if !state.events.wants(Kind::Pull) {
        return;
    }
    let data = EventData {
        repository: repo.to_string(),
        tag: match reference {
            Reference::Tag(t) => Some(t.to_string()),
            Reference::Digest(_) => None,
        },
        digest: header_str(headers, "docker-content-digest").map(str::to_owned),
        media_type: header_str(headers, header::CONTENT_TYPE).map(str::to_owned),
        size: content_length(headers).ok().flatten(),
        from: None,
        ..EventData::default()
    };
    let events = state.events.build(Kind::Pull, actor, data);
    if events.is_empty() {
        return;
    }
    match state.store.enqueue_events(&events).await {
        Ok(()) => state.events.wake(),
        Err(e) => tracing::warn!(error = %e, "cannot queue the pull event"),
    }
}
