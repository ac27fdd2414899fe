//! Requests for mirrored repositories: the route rewritten onto the local
//! copy (`<upstream>/<repository>`), reads made ready by [`crate::mirror`]
//! and then answered from the store like any other, writes refused
//! (`DENIED`: a mirror is read-only to clients).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use store::{Digest, RepoName, Store};

use super::request::Query;
use super::responses::{BlobContent, TagList};
use super::{blobs, listings, manifests, AppState};
use crate::error::{ApiError, Code};
use crate::mirror::blobs::{BlobSource, StoreHolder};
use crate::mirror::manifests::Ready;
use crate::mirror::{MirrorError, Target, UpstreamError};
use crate::path::Route;

impl AsRef<Store> for AppState {
    fn as_ref(&self) -> &Store {
        &self.store
    }
}

/// Map `route` onto a mirrored repository when its name (or `?ns=`) says so.
pub(super) async fn resolve(
    state: &AppState,
    route: Route,
    query: &Query,
    m: &Method,
) -> Result<(Route, Option<Target>), ApiError> {
    let Some(repo) = route.repo() else {
        return Ok((route, None));
    };
    let read = *m == Method::GET || *m == Method::HEAD;
    let ns = query.get("ns");
    let Some(target) = state.mirror.resolve(&state.store, repo, ns, read).await? else {
        return Ok((route, None));
    };
    let local = target.local.clone();
    let route = match route {
        Route::Tags(_) => Route::Tags(local),
        Route::Manifest(_, r) => Route::Manifest(local, r),
        Route::BadManifestReference(_, r) => Route::BadManifestReference(local, r),
        Route::Referrers(_, d) => Route::Referrers(local, d),
        Route::Uploads(_) => Route::Uploads(local),
        Route::Upload(_, id) => Route::Upload(local, id),
        Route::Blob(_, d) => Route::Blob(local, d),
        other => other,
    };
    Ok((route, Some(target)))
}

/// Answer a request for a mirrored repository; `None` leaves it to the
/// local handlers (referrers, once fetched: what the store holds).
pub(super) async fn serve(
    state: &Arc<AppState>,
    target: &Target,
    route: &Route,
    m: &Method,
    h: &HeaderMap,
    query: &Query,
) -> Option<Result<Response, ApiError>> {
    let read = *m == Method::GET || *m == Method::HEAD;
    if read && matches!(route, Route::Manifest(..) | Route::Blob(..)) {
        state.mirror.pulled(target);
    }
    Some(match route {
        Route::Manifest(repo, r) if read => {
            manifest(&state.store, state, target, repo, r, *m == Method::GET).await
        }
        Route::Blob(repo, d) if read => blob(state, target, repo, d, h, *m == Method::GET).await,
        Route::Referrers(_, subject) if read => {
            let ready = state.mirror.referrers(&state.store, target, subject).await;
            match ready {
                Ok(()) => return None,
                Err(e) => Err(client_error(e, Code::ManifestUnknown)),
            }
        }
        Route::Tags(repo) if *m == Method::GET => tags(state, target, repo, query).await,
        Route::BadManifestReference(..) if read => return None,
        _ => Err(ApiError::new(Code::Denied).detail(format!(
            "{} is a mirror of upstream {}: it is read-only",
            target.local, target.upstream.name
        ))),
    })
}

async fn manifest(
    store: &Store,
    state: &AppState,
    t: &Target,
    repo: &RepoName,
    reference: &store::Reference,
    with_body: bool,
) -> Result<Response, ApiError> {
    let ready = state
        .mirror
        .manifest(store, t, reference)
        .await
        .map_err(|e| client_error(e, Code::ManifestUnknown))?;
    let mut response = manifests::get_manifest(store, repo, reference, with_body).await?;
    if let Ready::Stale(reason) = ready {
        mark_stale(&mut response, t, &reason);
    }
    Ok(response)
}

/// The upstream's tags merged with the local ones, a page of them.
async fn tags(
    state: &AppState,
    t: &Target,
    repo: &RepoName,
    query: &Query,
) -> Result<Response, ApiError> {
    let (n, last) = listings::pagination(query)?;
    let (all, stale) = state
        .mirror
        .tag_list(&state.store, t)
        .await
        .map_err(|e| client_error(e, Code::NameUnknown))?;
    let want = n.map_or(usize::MAX, |n| {
        n.saturating_add(1).min(usize::MAX as u64) as usize
    });
    let start = match &last {
        Some(last) => all.partition_point(|tag| tag <= last),
        None => 0,
    };
    let page: Vec<String> = all[start..].iter().take(want).cloned().collect();
    let mut response = TagList {
        repo,
        tags: &page,
        n,
    }
    .into_response();
    if let Some(reason) = stale {
        mark_stale(&mut response, t, &reason);
    }
    Ok(response)
}

/// The `Warning: 110` header of a cached answer served while its upstream failed.
fn mark_stale(response: &mut Response, t: &Target, reason: &impl std::fmt::Display) {
    let warning = format!(
        "110 - \"Response is Stale: upstream {}: {reason}\"",
        t.upstream.name
    );
    if let Ok(v) = HeaderValue::from_str(&warning) {
        response.headers_mut().insert(header::WARNING, v);
    }
}

async fn blob(
    state: &Arc<AppState>,
    t: &Target,
    repo: &RepoName,
    digest: &Digest,
    h: &HeaderMap,
    with_body: bool,
) -> Result<Response, ApiError> {
    let tee = with_body && !h.contains_key(header::RANGE);
    let holder: StoreHolder = state.clone();
    let source = state
        .mirror
        .blob(holder, t, digest, tee)
        .await
        .map_err(|e| client_error(e, Code::BlobUnknown))?;
    match source {
        BlobSource::Store => blobs::get_blob(&state.store, repo, digest, h, with_body).await,
        BlobSource::Tee { size, body } => {
            let stream = futures::stream::unfold(body, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed();
            match size {
                Some(size) => Ok(BlobContent {
                    digest,
                    size,
                    range: None,
                    body: Body::from_stream(stream),
                }
                .into_response()),
                None => {
                    let mut r = Body::from_stream(stream).into_response();
                    let headers = r.headers_mut();
                    headers.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
                        headers.insert("docker-content-digest", v);
                    }
                    Ok(r)
                }
            }
        }
    }
}

/// The client's view of a mirror failure: the spec's JSON, naming the
/// upstream and what went wrong, never its URL or credentials.
fn client_error(e: MirrorError, not_found: Code) -> ApiError {
    let (upstream, source) = match e {
        MirrorError::Store(e) => return e.into(),
        MirrorError::Upstream { upstream, source } => (upstream, source),
    };
    let detail = format!("upstream {upstream}: {source}");
    match source {
        UpstreamError::NotFound => ApiError::new(not_found).detail(detail),
        UpstreamError::Unavailable { .. } => ApiError::new(Code::Unavailable)
            .detail(detail)
            .header(header::RETRY_AFTER, "5"),
        UpstreamError::Denied { .. } => ApiError::new(Code::Denied).detail(detail),
        _ => ApiError::new(Code::Unknown)
            .status(StatusCode::BAD_GATEWAY)
            .detail(detail),
    }
}
