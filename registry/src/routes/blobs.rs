//! `/v2/<name>/blobs/<digest>`: read (whole or a `Range`) and delete.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use store::{Digest, RepoName, Store};

use super::request::header_str;
use super::responses::BlobContent;
use crate::error::{ApiError, Code};
use crate::range;

/// `GET`/`HEAD`: the blob's headers, and for a GET its bytes.
pub(super) async fn get_blob(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
    h: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let size = store.blob_size(repo, digest).await?;
    let range = match header_str(h, header::RANGE) {
        None => None,
        Some(v) => Some(range::parse_range(v, size).map_err(|_| {
            ApiError::new(Code::BlobUnknown)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .detail(format!(
                    "range {v} cannot be served from a blob of {size} bytes"
                ))
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
        })?),
    };
    let mut blob = BlobContent {
        digest,
        size,
        range,
        body: Body::empty(),
    };
    if with_body && blob.body_len() > 0 {
        let stream = store.read_blob(digest, blob.range.clone()).await?;
        blob.body = Body::from_stream(stream);
    }
    Ok(blob.into_response())
}

/// `DELETE`: unlink the blob from the repository.
pub(super) async fn delete_blob(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Response, ApiError> {
    store.delete_blob(repo, digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
