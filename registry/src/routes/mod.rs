//! HTTP handlers: parse the request, call the store, shape the response.
//!
//! Handlers hold no SQL and build no storage keys; everything goes through
//! [`store::Store`]. One catch-all route feeds [`dispatch`], which matches the
//! parsed [`Route`] and the method.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::json;
use store::{Digest, Reference, RepoName, Store, Tag, UploadId};

use crate::auth::{Action, Auth, Caller, Refusal, Verified};
use crate::error::{body_error, upload_range, ApiError, Code};
use crate::path::{self, Route};
use crate::range;

/// Shared state of every handler.
pub struct AppState {
    /// The image store.
    pub store: Store,
    /// Access control; `None` serves everyone.
    pub auth: Option<Auth>,
    /// Whether the listener speaks HTTPS (for the token realm).
    pub tls: bool,
    /// The longest pause allowed between two pieces of a request body.
    pub body_idle_timeout: std::time::Duration,
    /// Request and storage metrics.
    pub metrics: crate::metrics::Metrics,
    /// Per-client rate limit, when configured.
    pub limiter: Option<crate::limits::RateLimiter>,
    /// Bytes of manifest bodies held in memory, over all requests.
    pub manifest_budget: crate::limits::ByteBudget,
    /// How long a manifest body may take to arrive whole.
    pub manifest_body_timeout: std::time::Duration,
}

type ApiResult = Result<Response, ApiError>;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Query parameters in order, repeated keys kept.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &axum::http::Uri) -> Result<Query, ApiError> {
        let raw = uri.query().unwrap_or("");
        serde_urlencoded_pairs(raw).map(Query)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{raw}").parse().map_err(|_| bad_query())?,
    )
    .map(|q| q.0)
    .map_err(|_| bad_query())
}

fn bad_query() -> ApiError {
    ApiError::new(Code::Unsupported)
        .status(StatusCode::BAD_REQUEST)
        .detail("malformed query string")
}

/// The single entry point for `/v2/...`.
pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match route(&state, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(state: &AppState, request: Request) -> ApiResult {
    let (parts, body) = request.into_parts();
    let body = idle_timeout(body, state.body_idle_timeout);
    let route = path::parse(parts.uri.path())?;
    let query = Query::parse(&parts.uri)?;
    let store = &state.store;
    let h = &parts.headers;
    let m = &parts.method;
    let host = header_str(h, header::HOST)
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let access = authorize(state, &route, m, &query, h, host, peer_ip(&parts)).await?;
    match route {
        Route::Base if is_read(m) => Ok(Json(json!({})).into_response()),
        Route::Catalog if *m == Method::GET => catalog(state, &access.who.caller, &query).await,
        Route::Tags(repo) if *m == Method::GET => tags(store, &repo, &query).await,
        Route::Manifest(repo, r) if is_read(m) => {
            get_manifest(store, &repo, &r, *m == Method::GET).await
        }
        Route::Manifest(repo, r) if *m == Method::PUT => {
            put_manifest(state, &repo, &r, &query, h, body).await
        }
        Route::Manifest(repo, r) if *m == Method::DELETE => delete_manifest(store, &repo, &r).await,
        Route::BadManifestReference(_, r) if is_read(m) => {
            Err(ApiError::new(Code::ManifestUnknown)
                .detail(format!("{r:?} is neither a valid tag nor a valid digest")))
        }
        Route::BadManifestReference(_, r) if *m == Method::PUT || *m == Method::DELETE => Err(r
            .parse::<Reference>()
            .err()
            .map_or_else(|| ApiError::new(Code::ManifestInvalid), ApiError::from)),
        Route::Referrers(repo, d) if *m == Method::GET => referrers(store, &repo, &d, &query).await,
        Route::Blob(repo, d) if is_read(m) => {
            get_blob(store, &repo, &d, h, *m == Method::GET).await
        }
        Route::Blob(repo, d) if *m == Method::DELETE => delete_blob(store, &repo, &d).await,
        Route::Uploads(repo) if *m == Method::POST => {
            post_upload(store, &access, &repo, &query, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::GET => get_upload(store, &repo, &id).await,
        Route::Upload(repo, id) if *m == Method::PATCH => {
            patch_upload(store, &repo, &id, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::PUT => {
            put_upload(store, &repo, &id, &query, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::DELETE => delete_upload(store, &repo, &id).await,
        _ => Err(ApiError::new(Code::Unsupported)
            .detail(format!("{m} is not supported on {}", parts.uri.path()))),
    }
}

/// What a request needs: the (repository, action) it must be allowed.
///
/// A mount's source is not among them: a caller who may not pull `from` gets
/// a plain upload session, as if the blob were not there (see [`post_upload`]).
fn needs(route: &Route, m: &Method) -> Option<(String, Action)> {
    let repo = route.repo()?;
    let action = match route {
        _ if *m == Method::DELETE && !matches!(route, Route::Upload(..)) => Action::Delete,
        _ if is_read(m) && !matches!(route, Route::Upload(..)) => Action::Pull,
        _ => Action::Push,
    };
    Some((repo.to_string(), action))
}

/// The repository a mount request would read from, named in the challenge's
/// scope so that token clients ask for it (it is granted only if permitted).
fn mount_source<'q>(route: &Route, query: &'q Query) -> Option<&'q str> {
    match route {
        Route::Uploads(_) if query.get("mount").is_some() => query.get("from"),
        _ => None,
    }
}

/// How many repositories holding a blob a mount without `from` looks at.
const MOUNT_CANDIDATES: u32 = 64;

/// The repositories a mount request could link from, before the caller's
/// rights pick among them: the named `from`; without `from`, the
/// repositories that hold the blob (automatic content discovery). Empty for
/// any other request.
async fn mount_candidates(
    store: &Store,
    route: &Route,
    query: &Query,
) -> Result<Vec<RepoName>, ApiError> {
    let (Route::Uploads(repo), Some(mount)) = (route, query.get("mount")) else {
        return Ok(Vec::new());
    };
    if let Some(from) = query.get("from") {
        return Ok(vec![from.parse()?]);
    }
    // A malformed digest is reported by the upload itself.
    let Ok(digest) = mount.parse::<Digest>() else {
        return Ok(Vec::new());
    };
    let mut repos = store.repos_holding_blob(&digest, MOUNT_CANDIDATES).await?;
    repos.retain(|r| r != repo);
    Ok(repos)
}

/// An authenticated caller, with what the request may use beyond its needs.
pub struct Access {
    /// Who the caller is, with its token's grants.
    pub who: Verified,
    /// Where a mount may link from: a candidate the caller may pull, or
    /// `None` (the mount is then a plain upload).
    pub mount_from: Option<RepoName>,
}

/// Authenticate the caller and check every permission the request needs.
async fn authorize(
    state: &AppState,
    route: &Route,
    m: &Method,
    query: &Query,
    h: &HeaderMap,
    host: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<Access, ApiError> {
    let Some(auth) = &state.auth else {
        // Without access rules everyone may pull everything.
        let candidates = mount_candidates(&state.store, route, query).await?;
        return Ok(Access {
            who: Verified {
                caller: Caller::Anonymous,
                grants: None,
            },
            mount_from: candidates.into_iter().next(),
        });
    };
    let needs = needs(route, m);
    let scope_with = |source: Option<&str>| match (route, &needs) {
        (Route::Catalog, _) => Some("registry:catalog:*".to_owned()),
        (_, None) => None,
        (_, Some((repo, action))) => {
            let mut scope = match action {
                Action::Push => format!("repository:{repo}:pull,push"),
                a => format!("repository:{repo}:{}", a.name()),
            };
            if let Some(from) = source {
                scope.push_str(&format!(" repository:{from}:pull"));
            }
            Some(scope)
        }
    };
    let refuse_with = |r: Refusal, source: Option<&str>| match r {
        Refusal::Denied => ApiError::new(Code::Denied),
        Refusal::Throttled { retry_after } => throttled(retry_after),
        Refusal::Unauthenticated { reason } => {
            let error = match (h.contains_key(header::AUTHORIZATION), reason) {
                (false, _) => None,
                (true, crate::auth::NARROW_TOKEN) => Some("insufficient_scope"),
                (true, _) => Some("invalid_token"),
            };
            ApiError::new(Code::Unauthorized).detail(reason).header(
                header::WWW_AUTHENTICATE,
                auth.challenge(host, state.tls, scope_with(source).as_deref(), error),
            )
        }
    };
    let refuse = |r: Refusal| refuse_with(r, mount_source(route, query));
    let who: Verified = auth
        .verify(header_str(h, header::AUTHORIZATION), peer)
        .await
        .map_err(refuse)?;
    if needs.is_none() && who.caller == Caller::Anonymous && who.grants.is_none() {
        return Err(refuse(Refusal::Unauthenticated {
            reason: "authentication required",
        }));
    }
    if let Some((repo, action)) = &needs {
        auth.check(&who, repo, *action).map_err(refuse)?;
    }
    // Only now, with the caller known and allowed to push, look at where
    // the blob is: a mount links from a candidate the caller may pull.
    let candidates = mount_candidates(&state.store, route, query).await?;
    let mount_from = candidates
        .iter()
        .find(|c| auth.check(&who, c.as_str(), Action::Pull).is_ok())
        .cloned();
    // A token too narrow for a source the rules let the caller pull: ask
    // for a wider one (401 insufficient_scope naming it), as clients expect.
    // Without the permission the mount quietly becomes a plain upload.
    if mount_from.is_none() && who.grants.is_some() {
        if let Some(c) = candidates
            .iter()
            .find(|c| auth.permitted(&who.caller, c.as_str()).has(Action::Pull))
        {
            let narrow = auth.check(&who, c.as_str(), Action::Pull).unwrap_err();
            return Err(refuse_with(narrow, Some(c.as_str())));
        }
    }
    Ok(Access { who, mount_from })
}

/// The client's address, when the server recorded it.
pub fn peer_ip(parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// 429 after too many failed logins.
pub fn throttled(retry_after: u64) -> ApiError {
    ApiError::new(Code::TooManyRequests)
        .detail(format!("too many failed logins; retry in {retry_after} s"))
        .header(header::RETRY_AFTER, retry_after.to_string())
}

fn is_read(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

struct Json(serde_json::Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match header_str(h, header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(Code::SizeInvalid).detail("invalid Content-Length")),
    }
}

/// Fail the body with `TimedOut` when the client sends nothing for `idle`, so
/// a stalled upload releases its task and connection (answered with 408).
fn idle_timeout(body: Body, idle: std::time::Duration) -> Body {
    let frames = futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(frame)) => Some((frame.map_err(std::io::Error::other), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no body data for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    });
    Body::from_stream(frames)
}

fn body_stream(body: Body) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    body.into_data_stream().map_err(std::io::Error::other)
}

/// Whether a request carries a body: a non-zero length, or chunked encoding.
fn has_body(h: &HeaderMap) -> Result<bool, ApiError> {
    Ok(match content_length(h)? {
        Some(n) => n > 0,
        None => h.contains_key(header::TRANSFER_ENCODING),
    })
}

fn response(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(*k, v);
        }
    }
    r
}

fn pagination(query: &Query) -> Result<(Option<u64>, Option<String>), ApiError> {
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

/// Shape a paginated list: fetch one more than asked to know whether to send `Link`.
fn paginated(
    key: &str,
    mut items: &[String],
    n: Option<u64>,
    base: &str,
    extra: serde_json::Value,
) -> Response {
    let mut link = None;
    if let Some(n) = n {
        if items.len() as u64 > n {
            items = &items[..n as usize];
            if let Some(last) = items.last() {
                link = Some(format!("<{base}?n={n}&last={last}>; rel=\"next\""));
            }
        }
    }
    // Serialized straight from the strings: a JSON value per item would cost
    // an allocation each, which shows on a 10,000-tag list. Tag and
    // repository names never need escaping, so they are copied as they are
    // (escaping was a quarter of the CPU time of such a listing).
    let mut body = serde_json::to_vec(&extra).expect("JSON object serializes");
    body.pop(); // the closing brace
    if body.len() > 1 {
        body.push(b',');
    }
    serde_json::to_writer(&mut body, key).expect("string serializes");
    body.extend_from_slice(b":[");
    body.reserve(items.iter().map(|i| i.len() + 3).sum());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let plain = item
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if plain {
            body.push(b'"');
            body.extend_from_slice(item.as_bytes());
            body.push(b'"');
        } else {
            serde_json::to_writer(&mut body, item).expect("string serializes");
        }
    }
    body.extend_from_slice(b"]}");
    let mut r = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LINK, link);
    }
    r
}

async fn catalog(state: &AppState, caller: &Caller, query: &Query) -> ApiResult {
    let (n, mut last) = pagination(query)?;
    let want = n.map_or(u64::MAX, |n| n.saturating_add(1));
    let Some(auth) = &state.auth else {
        let repos = state.store.repositories(last.as_deref(), want).await?;
        return Ok(paginated(
            "repositories",
            &repos,
            n,
            "/v2/_catalog",
            json!({}),
        ));
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
    Ok(paginated(
        "repositories",
        &repos,
        n,
        "/v2/_catalog",
        json!({}),
    ))
}

/// `GET`/`POST /token`: the Docker token flow, with Basic credentials or the OAuth2 password form.
pub async fn token(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match issue_token(&state, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue_token(state: &AppState, request: Request) -> ApiResult {
    let Some(auth) = &state.auth else {
        return Err(ApiError::not_found("/token"));
    };
    let (parts, body) = request.into_parts();
    let mut params = Query::parse(&parts.uri)?.0;
    let mut authorization = header_str(&parts.headers, header::AUTHORIZATION).map(str::to_owned);
    if parts.method == Method::POST {
        let form = read_limited(body, 64 * 1024).await?;
        let form = serde_urlencoded_pairs(std::str::from_utf8(&form).map_err(|_| bad_query())?)?;
        let form = Query(form);
        match form.get("grant_type") {
            Some("password") => {
                let user = form.get("username").unwrap_or("");
                let password = form.get("password").unwrap_or("");
                let basic = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{user}:{password}"),
                );
                authorization = Some(format!("Basic {basic}"));
            }
            other => {
                let detail = format!("unsupported grant_type {:?}", other.unwrap_or(""));
                return Err(ApiError::new(Code::Unsupported)
                    .status(StatusCode::BAD_REQUEST)
                    .detail(detail));
            }
        }
        params.extend(form.0);
    } else if parts.method != Method::GET {
        return Err(ApiError::new(Code::Unsupported));
    }
    if authorization
        .as_deref()
        .is_some_and(|a| !a.starts_with("Basic "))
    {
        authorization = None;
    }
    let peer = peer_ip(&parts);
    let who = auth
        .verify(authorization.as_deref(), peer)
        .await
        .map_err(|r| match r {
            Refusal::Throttled { retry_after } => throttled(retry_after),
            _ => ApiError::new(Code::Unauthorized)
                .detail("invalid username or password")
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"strata\""),
        })?;
    let scopes: Vec<String> = Query(params).all("scope").map(str::to_owned).collect();
    let (token, expires_in) = auth.issue_token(&who.caller, &scopes);
    Ok(
        Json(json!({"token": token, "access_token": token, "expires_in": expires_in}))
            .into_response(),
    )
}

async fn tags(store: &Store, repo: &RepoName, query: &Query) -> ApiResult {
    let (n, last) = pagination(query)?;
    let tags = store
        .tags(
            repo,
            last.as_deref(),
            n.map_or(u64::MAX, |n| n.saturating_add(1)),
        )
        .await?;
    let base = format!("/v2/{repo}/tags/list");
    Ok(paginated(
        "tags",
        &tags,
        n,
        &base,
        json!({"name": repo.as_str()}),
    ))
}

// ---- manifests ----

async fn get_manifest(
    store: &Store,
    repo: &RepoName,
    reference: &Reference,
    with_body: bool,
) -> ApiResult {
    let m = store.manifest(repo, reference, with_body).await?;
    let headers = [
        (header::CONTENT_TYPE.as_str(), m.media_type.clone()),
        (header::CONTENT_LENGTH.as_str(), m.size.to_string()),
        (DIGEST_HEADER, m.digest.to_string()),
        (header::ETAG.as_str(), format!("\"{}\"", m.digest)),
    ];
    let mut r = response(StatusCode::OK, &headers);
    if let Some(bytes) = m.bytes {
        *r.body_mut() = Body::from(bytes);
    }
    Ok(r)
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // Past the limit keep draining (up to a bound) so the client reads our
    // error instead of a connection reset.
    const DRAIN: usize = 16 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let e = std::io::Error::other(e);
            body_error(Code::ManifestInvalid, &e).detail(format!("request body: {e}"))
        })?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN {
            break;
        }
    }
    if seen > limit {
        return Err(store::Error::ManifestTooLarge { size: seen, limit }.into());
    }
    Ok(buf.freeze())
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
    const DRAIN: usize = 16 * 1024 * 1024;
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

async fn put_manifest(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
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
    let mut headers = vec![
        (
            header::LOCATION.as_str(),
            format!("/v2/{repo}/manifests/{}", put.digest),
        ),
        (DIGEST_HEADER, put.digest.to_string()),
    ];
    if let Some(subject) = &put.subject {
        headers.push(("oci-subject", subject.to_string()));
    }
    for tag in &put.tags {
        headers.push(("oci-tag", tag.to_string()));
    }
    Ok(response(StatusCode::CREATED, &headers))
}

async fn delete_manifest(store: &Store, repo: &RepoName, reference: &Reference) -> ApiResult {
    store.delete_manifest(repo, reference).await?;
    Ok(response(StatusCode::ACCEPTED, &[]))
}

async fn referrers(store: &Store, repo: &RepoName, subject: &Digest, query: &Query) -> ApiResult {
    let filter = query.get("artifactType").filter(|t| !t.is_empty());
    let manifests = store.referrers(repo, subject, filter).await?;
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

// ---- blobs ----

async fn get_blob(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
    h: &HeaderMap,
    with_body: bool,
) -> ApiResult {
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
    let (status, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let mut headers = vec![
        (header::CONTENT_LENGTH.as_str(), len.to_string()),
        (
            header::CONTENT_TYPE.as_str(),
            "application/octet-stream".to_owned(),
        ),
        (DIGEST_HEADER, digest.to_string()),
        (header::ACCEPT_RANGES.as_str(), "bytes".to_owned()),
        (header::ETAG.as_str(), format!("\"{digest}\"")),
    ];
    if let Some(r) = &range {
        headers.push((
            header::CONTENT_RANGE.as_str(),
            format!("bytes {}-{}/{size}", r.start, r.end - 1),
        ));
    }
    let mut response = response(status, &headers);
    if with_body && len > 0 {
        let stream = store.read_blob(digest, range).await?;
        *response.body_mut() = Body::from_stream(stream);
    }
    Ok(response)
}

async fn delete_blob(store: &Store, repo: &RepoName, digest: &Digest) -> ApiResult {
    store.delete_blob(repo, digest).await?;
    Ok(response(StatusCode::ACCEPTED, &[]))
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    response(
        StatusCode::CREATED,
        &[
            (
                header::LOCATION.as_str(),
                format!("/v2/{repo}/blobs/{digest}"),
            ),
            (DIGEST_HEADER, digest.to_string()),
        ],
    )
}

fn upload_accepted(status: StatusCode, repo: &RepoName, id: &UploadId, size: u64) -> Response {
    response(
        status,
        &[
            (
                header::LOCATION.as_str(),
                format!("/v2/{repo}/blobs/uploads/{id}"),
            ),
            (header::RANGE.as_str(), upload_range(size)),
            (UPLOAD_UUID_HEADER, id.to_string()),
        ],
    )
}

/// `POST .../blobs/uploads/`: a mount, a monolithic push, or a new session.
///
/// A mount links only from a repository the caller may pull
/// ([`Access::mount_from`]): the named `from`, or without `from` one of the
/// repositories holding the blob. When there is none (no such repository the
/// caller may read, or a `from` it may not read or that lacks the blob) the
/// answer is a plain new session (202), the same in every case, so a mount
/// never tells whether a digest is stored where the caller cannot look.
async fn post_upload(
    store: &Store,
    access: &Access,
    repo: &RepoName,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
    if let Some(mount) = query.get("mount") {
        let digest: Digest = mount.parse()?;
        if let Some(from) = &access.mount_from {
            if store.mount_blob(repo, &digest, from).await? {
                return Ok(blob_created(repo, &digest));
            }
        }
    } else if let Some(d) = query.get("digest") {
        let digest: Digest = d.parse()?;
        store
            .put_blob(repo, &digest, content_length(h)?, body_stream(body))
            .await?;
        return Ok(blob_created(repo, &digest));
    }
    let id = store.start_upload(repo).await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, repo, &id, 0))
}

async fn get_upload(store: &Store, repo: &RepoName, id: &UploadId) -> ApiResult {
    let size = store.upload_offset(repo, id).await?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, repo, id, size))
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

async fn patch_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
    let (start, len) = chunk_bounds(h)?;
    let size = store
        .append_upload(repo, id, start, len, body_stream(body))
        .await?;
    Ok(upload_accepted(StatusCode::ACCEPTED, repo, id, size))
}

async fn put_upload(
    store: &Store,
    repo: &RepoName,
    id: &UploadId,
    query: &Query,
    h: &HeaderMap,
    body: Body,
) -> ApiResult {
    let digest: Digest = query
        .get("digest")
        .ok_or_else(|| {
            ApiError::new(Code::DigestInvalid).detail("the digest parameter is required")
        })?
        .parse()?;
    if has_body(h)? {
        let (start, len) = chunk_bounds(h)?;
        store
            .append_upload(repo, id, start, len, body_stream(body))
            .await?;
    }
    store.finish_upload(repo, id, &digest).await?;
    Ok(blob_created(repo, &digest))
}

async fn delete_upload(store: &Store, repo: &RepoName, id: &UploadId) -> ApiResult {
    store.cancel_upload(repo, id).await?;
    Ok(response(StatusCode::NO_CONTENT, &[]))
}
