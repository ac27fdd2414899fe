//! HTTP handlers: parse the request, call the store, shape the response.
//!
//! Handlers hold no SQL and build no storage keys; everything goes through
//! [`store::Store`]. One catch-all route feeds [`dispatch`], which takes the
//! [`ParsedRoute`] the server's middleware parsed (once per request: the
//! metrics label comes from it too), asks [`crate::auth::policy`] whether the
//! caller may, and matches route and method to a handler of one resource:
//!
//! ```text
//! routes (AppState, ParsedRoute, dispatch)
//!  ├── blobs      GET/HEAD/DELETE  /v2/<name>/blobs/<digest>
//!  ├── uploads    POST             /v2/<name>/blobs/uploads/   (mount, monolithic, session)
//!  │              GET/PATCH/PUT/DELETE  .../blobs/uploads/<id>
//!  ├── manifests  GET/HEAD/PUT/DELETE   /v2/<name>/manifests/<reference>
//!  ├── listings   tags/list, _catalog, referrers/<digest>
//!  ├── mirrored   mirrored repositories: reads through crate::mirror, writes DENIED
//!  ├── token      GET/POST /token (outside /v2)
//!  ├── request    query, headers, body streams and limits (used by all of the above)
//!  └── responses  the success responses as types (used by all of the above)
//! ```

mod blobs;
mod listings;
mod manifests;
mod mirrored;
mod request;
pub mod responses;
mod token;
mod uploads;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store::Store;

use crate::auth::policy::{self, is_read, AccessRequest};
use crate::error::{ApiError, Code};
use crate::path::{self, Route};
pub use request::peer_ip;
use request::{header_str, idle_timeout, Query};
pub use token::token;

/// Shared state of every handler.
pub struct AppState {
    /// The image store.
    pub store: Store,
    /// What a SIGHUP reloads: access control, the rate limit, trusted proxies.
    pub live: crate::reload::LiveCell,
    /// Whether the listener speaks HTTPS (for the token realm).
    pub tls: bool,
    /// The longest pause allowed between two pieces of a request body.
    pub body_idle_timeout: std::time::Duration,
    /// Request and storage metrics.
    pub metrics: crate::metrics::Metrics,
    /// Bytes of manifest bodies held in memory, over all requests.
    pub manifest_budget: crate::limits::ByteBudget,
    /// How long a manifest body may take to arrive whole.
    pub manifest_body_timeout: std::time::Duration,
    /// The low-space reserve and the fault counters.
    pub faults: crate::faults::Faults,
    /// The upstreams mirrored (none: every repository is local).
    pub mirror: crate::mirror::Mirror,
    /// Repository policies: immutable tags.
    pub policy: crate::policy::Policies,
    /// The webhooks: which events go to the outbox.
    pub events: crate::events::Events,
    /// The audit log.
    pub audit: crate::audit::Audit,
    /// `[[retention]]`: the pulls noted for it, its counters (rules are in `live`).
    pub pruner: crate::policy::pruning::Pruner,
    /// The web UI's sessions; `None` when the UI is off.
    pub ui: Option<crate::ui::Ui>,
}

/// A `/v2/...` path parsed into a [`Route`] (or the error to answer), kept
/// in the request's extensions from the middleware that parsed it to
/// [`dispatch`].
#[derive(Debug, Clone)]
pub struct ParsedRoute(Result<Route, ApiError>);

impl ParsedRoute {
    /// Parse a request path.
    pub fn parse(path: &str) -> ParsedRoute {
        ParsedRoute(path::parse(path))
    }

    /// The route's metrics label (`invalid` for a path that does not parse).
    pub fn label(&self) -> &'static str {
        self.0.as_ref().map_or("invalid", Route::name)
    }
}

/// The single entry point for `/v2/...`; writes and refusals go to the audit log.
pub async fn dispatch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let repo = request
        .extensions()
        .get::<ParsedRoute>()
        .and_then(|p| p.0.as_ref().ok())
        .and_then(Route::repo)
        .map(|r| r.to_string());
    let pending = crate::audit::Pending::of(&request, repo);
    let mut user = None;
    let response = match route(&state, request, &mut user).await {
        Ok(response) => response,
        Err(e) => {
            let message = crate::audit::AuditMessage(e.shown_message().to_owned());
            let mut response = e.into_response();
            response.extensions_mut().insert(message);
            response
        }
    };
    state.audit.record(pending, user.as_deref(), &response);
    response
}

async fn route(
    state: &Arc<AppState>,
    request: Request,
    user: &mut Option<String>,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let body = idle_timeout(body, state.body_idle_timeout);
    // Parsed by the middleware; a router built without it parses here.
    let route = match parts.extensions.remove::<ParsedRoute>() {
        Some(ParsedRoute(route)) => route,
        None => path::parse(parts.uri.path()),
    }?;
    let query = Query::parse(&parts.uri)?;
    let (route, mirrored) = mirrored::resolve(state, route, &query, &parts.method).await?;
    let store = &state.store;
    let h = &parts.headers;
    let m = &parts.method;
    let origin = parts.extensions.get::<crate::forwarded::Origin>();
    let host = origin
        .and_then(|o| o.host.as_deref())
        .or_else(|| header_str(h, header::HOST))
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let tls = origin.and_then(|o| o.https).unwrap_or(state.tls);
    let asked = AccessRequest {
        route: &route,
        method: m,
        mount: query.get("mount"),
        from: query.get("from"),
        authorization: header_str(h, header::AUTHORIZATION),
        sent_credentials: h.contains_key(header::AUTHORIZATION),
        host,
        peer: peer_ip(&parts),
    };
    let live = state.live.get();
    let access = policy::authorize(live.auth.as_ref(), tls, store, &asked).await?;
    *user = Some(access.who.caller.name().to_owned());
    let actor = crate::events::Actor {
        user: access.who.caller.name().to_owned(),
        client: asked.peer,
        host: host.to_owned(),
    };
    if let Some(target) = &mirrored {
        if let Some(answer) = mirrored::serve(state, target, &route, m, h, &query).await {
            return answer;
        }
    }
    match route {
        Route::Base if is_read(m) => Ok(axum::Json(json!({})).into_response()),
        Route::Catalog if *m == Method::GET => {
            listings::catalog(state, &access.who.caller, &query).await
        }
        Route::Tags(repo) if *m == Method::GET => listings::tags(store, &repo, &query).await,
        Route::Manifest(repo, r) if is_read(m) => {
            let response = manifests::get_manifest(store, &repo, &r, *m == Method::GET).await?;
            if *m == Method::GET {
                manifests::pulled(state, &actor, &repo, &r, response.headers()).await;
            }
            Ok(response)
        }
        Route::Manifest(repo, r) if *m == Method::PUT => {
            manifests::put_manifest(state, &actor, &repo, &r, &query, h, body).await
        }
        Route::Manifest(repo, r) if *m == Method::DELETE => {
            manifests::delete_manifest(state, &actor, &repo, &r).await
        }
        Route::BadManifestReference(_, r) if is_read(m) => Err(manifests::bad_reference(&r, true)),
        Route::BadManifestReference(_, r) if *m == Method::PUT || *m == Method::DELETE => {
            Err(manifests::bad_reference(&r, false))
        }
        Route::Referrers(repo, d) if *m == Method::GET => {
            listings::referrers(store, &repo, &d, &query).await
        }
        Route::Blob(repo, d) if is_read(m) => {
            blobs::get_blob(store, &repo, &d, h, *m == Method::GET).await
        }
        Route::Blob(repo, d) if *m == Method::DELETE => blobs::delete_blob(store, &repo, &d).await,
        Route::Uploads(repo) if *m == Method::POST => {
            uploads::post_upload(state, &access, &actor, &repo, &query, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::GET => {
            uploads::get_upload(store, &repo, &id).await
        }
        Route::Upload(repo, id) if *m == Method::PATCH => {
            uploads::patch_upload(store, &repo, &id, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::PUT => {
            uploads::put_upload(store, &repo, &id, &query, h, body).await
        }
        Route::Upload(repo, id) if *m == Method::DELETE => {
            uploads::delete_upload(store, &repo, &id).await
        }
        _ => Err(ApiError::new(Code::Unsupported)
            .detail(format!("{m} is not supported on {}", parts.uri.path()))),
    }
}
