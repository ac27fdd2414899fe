//! Lists: `/v2/<name>/tags/list`, `/v2/_catalog` (only what the caller may
//! pull) and `/v2/<name>/referrers/<digest>`. Pages follow `n` and `last`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::{Digest, RepoName, Store};

use super::request::Query;
use super::responses::{Catalog, ReferrerIndex, TagList};
use super::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, Code};

/// The page size `n` and the `last` name of a list request.
pub(super) fn pagination(query: &Query) -> Result<(Option<u64>, Option<String>), ApiError> {
    let n = match query.get("n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::new(Code::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .detail("n must be a non-negative integer")
        })?),
    };
    Ok((
        n,
        query
            .get("last")
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    ))
}

/// `GET .../tags/list`.
pub(super) async fn tags(
    store: &Store,
    repo: &RepoName,
    query: &Query,
) -> Result<Response, ApiError> {
    let (n, last) = pagination(query)?;
    let tags = store
        .tags(
            repo,
            last.as_deref(),
            n.map_or(u64::MAX, |n| n.saturating_add(1)),
        )
        .await?;
    Ok(TagList {
        repo,
        tags: &tags,
        n,
    }
    .into_response())
}

/// `GET /v2/_catalog`: with access rules, only the repositories `caller` may pull.
pub(super) async fn catalog(
    state: &AppState,
    caller: &Caller,
    query: &Query,
) -> Result<Response, ApiError> {
    let (n, mut last) = pagination(query)?;
    let want = n.map_or(u64::MAX, |n| n.saturating_add(1));
    let live = state.live.get();
    let Some(auth) = &live.auth else {
        let repos = state.store.repositories(last.as_deref(), want).await?;
        return Ok(Catalog { repos: &repos, n }.into_response());
    };
    // Only what the caller may pull, fetched in batches until the page is full.
    const BATCH: u64 = 1000;
    let mut repos = Vec::new();
    loop {
        let batch = state.store.repositories(last.as_deref(), BATCH).await?;
        let done = (batch.len() as u64) < BATCH;
        last = batch.last().cloned();
        repos.extend(
            batch
                .into_iter()
                .filter(|r| auth.permitted(caller, r).has(Action::Pull)),
        );
        if done || repos.len() as u64 >= want {
            break;
        }
    }
    repos.truncate(want.min(usize::MAX as u64) as usize);
    Ok(Catalog { repos: &repos, n }.into_response())
}

/// `GET .../referrers/<digest>`, filtered by `artifactType` when given.
pub(super) async fn referrers(
    store: &Store,
    repo: &RepoName,
    subject: &Digest,
    query: &Query,
) -> Result<Response, ApiError> {
    let filter = query.get("artifactType").filter(|t| !t.is_empty());
    let manifests = store.referrers(repo, subject, filter).await?;
    Ok(ReferrerIndex {
        manifests,
        filtered: filter.is_some(),
    }
    .into_response())
}
