//! `/v2/<name>/blobs/uploads/[<id>]`: start a session (or mount, or push
//! monolithically), report it, append chunks, finish and cancel it.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use store::{Digest, RepoName, Store, UploadId};

use super::request::{body_stream, content_length, drain, has_body, header_str, Query};
use super::responses::{BlobCreated, UploadAccepted, UploadStatus};
use super::AppState;
use crate::auth::policy::Access;
use crate::error::{ApiError, Code};
use crate::events::{Actor, EventData, Kind};
use crate::range;

/// `POST .../blobs/uploads/`: a mount, a monolithic push, or a new session.
///
/// A mount links only from a repository the caller may pull
/// ([`Access::mount_from`]): the named `from`, or without `from` one of the
/// repositories holding the blob. When there is none (no such repository the
/// caller may read, or a `from` it may not read or that lacks the blob) the
/// answer is a plain new session (202), the same in every case, so a mount
/// never tells whether a digest is stored where the caller cannot look.
/// A push or a new session, which will take space, is refused with 507 while
/// free space is under the reserve ([`crate::faults::Faults::admit_upload`]); a mount takes none.
pub(super) async fn post_upload(
    state: &AppState,
    access: &Access,
    actor: &Actor,
    repo: &RepoName,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (store, faults) = (&state.store, &state.faults);
    if let Some(mount) = query.get("mount") {
        let digest: Digest = mount.parse()?;
        if let Some(from) = &access.mount_from {
            let data = EventData {
                repository: repo.to_string(),
                digest: Some(digest.to_string()),
                from: Some(from.to_string()),
                ..EventData::default()
            };
            let events = state.events.build(Kind::Mount, actor, data);
            if store.mount_blob_with(repo, &digest, from, &events).await? {
                if !events.is_empty() {
                    state.events.wake();
                }
                return Ok(BlobCreated {
                    repo,
                    digest: &digest,
                }
                .into_response());
            }
        }
    } else if let Some(d) = query.get("digest") {
        let digest: Digest = d.parse()?;
        faults.admit_upload(store).await?;
        store
            .put_blob(repo, &digest, content_length(h)?, body_stream(body))
            .await?;
        return Ok(BlobCreated {
            repo,
            digest: &digest,
        }
        .into_response());
    }
    faults.admit_upload(store).await?;
    let id = store.start_upload(repo).await?;
    Ok(UploadAccepted {
        repo,
        id: &id,
        size: 0,
    }
    .into_response())
}

/// `GET`: how many bytes the session holds.
pub(super) async fn get_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    let size = store.upload_offset(repo, id).await?;
    Ok(UploadStatus(UploadAccepted { repo, id, size }).into_response())
}

/// The chunk's start and length from `Content-Range` and `Content-Length`, checked against each other.
fn chunk_bounds(h: &HeaderMap) -> Result<(Option<u64>, Option<u64>), ApiError> {
    let declared = content_length(h)?;
    let Some(v) = header_str(h, header::CONTENT_RANGE) else {
        return Ok((None, declared));
    };
    let (start, len) = range::parse_content_range(v).ok_or_else(|| {
        ApiError::new(Code::BlobUploadInvalid)
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .detail(format!("invalid Content-Range {v:?}"))
    })?;
    if declared.is_some_and(|n| n != len) {
        return Err(
            ApiError::new(Code::SizeInvalid).detail("Content-Length does not match Content-Range")
        );
    }
    Ok((Some(start), Some(len)))
}

/// Append the body as the session's next chunk. When it is refused (out of
/// order, a bad `Content-Range`, a busy session), what the client is still
/// sending is drained first, so that it reads the error.
async fn append_chunk(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
    h: &HeaderMap,
    body: Body,
) -> Result<u64, ApiError> {
    let mut data = body.into_data_stream();
    let appended = match chunk_bounds(h) {
        Ok((start, len)) => store
            .append_upload(
                repo,
                id,
                start,
                len,
                (&mut data).map_err(std::io::Error::other),
            )
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    if appended.is_err() {
        drain(data).await;
    }
    appended
}

/// `PATCH`: append a chunk.
pub(super) async fn patch_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
    h: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let size = append_chunk(store, repo, id, h, body).await?;
    Ok(UploadAccepted { repo, id, size }.into_response())
}

/// `PUT ...?digest=`: append a last chunk, if any, and commit the blob.
pub(super) async fn put_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest: Digest = query
        .get("digest")
        .ok_or_else(|| {
            ApiError::new(Code::DigestInvalid).detail("the digest parameter is required")
        })?
        .parse()?;
    if has_body(h)? {
        append_chunk(store, repo, id, h, body).await?;
    }
    store.finish_upload(repo, id, &digest).await?;
    Ok(BlobCreated {
        repo,
        digest: &digest,
    }
    .into_response())
}

/// `DELETE`: cancel the session.
pub(super) async fn delete_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
) -> Result<Response, ApiError> {
    store.cancel_upload(repo, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
