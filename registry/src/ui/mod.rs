//! The web UI at `/ui/`: server-rendered pages (maud templates, a little
//! embedded JS and CSS, nothing fetched from elsewhere) and the small JSON
//! API under `/ui/api/` that the pages' script uses (docs/ui.md).
//!
//! Every page and API call applies the same access rules as `/v2/`
//! ([`crate::auth::Auth::check`]): a viewer sees only the repositories they
//! may pull, and delete controls only where they may delete. A viewer is a
//! session's user (login form, cookie), a Basic `Authorization` header's
//! user, or anonymous.
//!
//! ```text
//! ui (router, handle: parse the path, who is viewing, dispatch; UiError)
//!  ├── path     /ui/... -> UiRoute (the one parser, grammar in its doc)
//!  ├── session  login sessions (cookie), CSRF tokens
//!  ├── view     what a page shows, read through Store, checked with auth (Serialize)
//!  ├── api      /ui/api/... answers: view as JSON, DELETE
//!  └── pages/   HTML: layout, repos, repo, image, dashboard, login, error; assets
//! ```
//! `pages` and `api` use `view`; `view` uses `Store`, `auth` and `metrics`.

mod api;
mod pages;
mod path;
mod session;
mod view;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::any;
use axum::Router;

use crate::auth::{Action, Auth, Caller, Refusal, Verified};
use crate::routes::AppState;
use path::{BadPath, UiRoute};
use session::{Session, Sessions, CSRF_COOKIE, SESSION_COOKIE};

/// The UI's own state: the login sessions.
#[derive(Default)]
pub struct Ui {
    sessions: Sessions,
}

impl Ui {
    /// A UI with no sessions yet.
    pub fn new() -> Ui {
        Ui::default()
    }
}

/// The UI's routes (merged into the app when the UI is on).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", any(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", any(handle))
        .route("/ui/{*rest}", any(handle))
}

/// Who is looking, and what they may do.
pub struct Viewer {
    /// The caller, as `/v2/` would see them.
    pub who: Verified,
    /// Their login session, if they used one.
    pub session: Option<Session>,
    /// Whether the registry has access control at all.
    pub auth_on: bool,
    /// The token forms must send back.
    pub csrf: String,
    /// The anonymous CSRF cookie must be set with the response.
    pub new_csrf_cookie: bool,
    /// Whether `/metrics` (and so the dashboard) is open to anonymous viewers.
    pub metrics_anonymous: bool,
    rules: Option<Arc<crate::reload::Live>>,
}

impl Viewer {
    /// Whether the viewer may do `action` on `repo`, by the rules of `/v2/`.
    pub fn may(&self, repo: &str, action: Action) -> bool {
        match self.rules.as_ref().and_then(|l| l.auth.as_ref()) {
            None => true,
            Some(auth) => auth.check(&self.who, repo, action).is_ok(),
        }
    }

    /// Whether no user is signed in.
    pub fn is_anonymous(&self) -> bool {
        self.who.caller == Caller::Anonymous
    }

    /// The user's name, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.who.caller {
            Caller::User(u) => Some(u),
            Caller::Anonymous => None,
        }
    }
}

/// What goes wrong on a page or API call; each has its status and page.
#[derive(Debug)]
pub enum UiError {
    /// No such page, repository, tag or manifest (404).
    NotFound(String),
    /// A malformed name, tag or digest, or a bad form (400).
    BadRequest(String),
    /// The page needs a login (401).
    LoginRequired,
    /// The session cookie names no live session (401).
    SessionExpired,
    /// The viewer may not (403).
    Forbidden,
    /// The form's CSRF token is missing or wrong (403).
    Csrf,
    /// Too many failed logins (429).
    Throttled(u64),
    /// Not a method this page takes (405).
    Method,
    /// The store failed (500, or 503 for a backend that is down); logged.
    Store(store::Error),
}

impl From<store::Error> for UiError {
    fn from(e: store::Error) -> UiError {
        match e {
            store::Error::NameUnknown { name } => {
                UiError::NotFound(format!("repository {name} is not known"))
            }
            store::Error::ManifestUnknown { reference } => {
                UiError::NotFound(format!("manifest {reference} is not known"))
            }
            e @ (store::Error::DigestInvalid { .. }
            | store::Error::DigestUnsupported { .. }
            | store::Error::NameInvalid { .. }
            | store::Error::TagInvalid { .. }) => UiError::BadRequest(e.to_string()),
            e => UiError::Store(e),
        }
    }
}

impl UiError {
    /// Status, short code and the message shown.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            UiError::LoginRequired => (
                StatusCode::UNAUTHORIZED,
                "login_required",
                "Log in to see this page.".into(),
            ),
            UiError::SessionExpired => (
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "Your session has expired or ended. Log in again.".into(),
            ),
            UiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "denied",
                "You may not do this here.".into(),
            ),
            UiError::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "The form was stale or came from another site. Reload the page and try again."
                    .into(),
            ),
            UiError::Throttled(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("Too many failed logins. Try again in {s} s."),
            ),
            UiError::Method => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method",
                "This page does not take that method.".into(),
            ),
            UiError::Store(e) => {
                let status = match e.fault() {
                    Some(_) => StatusCode::SERVICE_UNAVAILABLE,
                    None => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::error!(error = %e, "ui: store error");
                (
                    status,
                    "internal",
                    "The registry could not answer; see its log.".into(),
                )
            }
        }
    }
}

/// Everything under `/ui/`.
async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let api = UiRoute::is_api(request.uri().path());
    let (mut parts, body) = request.into_parts();
    let route = match path::parse(parts.uri.path()) {
        Ok(r) => r,
        Err(BadPath::NotFound) => {
            return failure(api, None, UiError::NotFound("no such page".into()))
        }
        Err(BadPath::Malformed(m)) => return failure(api, None, UiError::BadRequest(m)),
    };
    let lenient = matches!(route, UiRoute::Login | UiRoute::Logout | UiRoute::Asset(_));
    let viewer = match viewer(&state, &parts, lenient).await {
        Ok(v) => v,
        Err(e) => return failure(api, None, e),
    };
    let ctx = Ctx::new(&state, &parts.headers);
    let result = match route {
        UiRoute::Asset(name) => Ok(pages::asset(&name)),
        UiRoute::Login | UiRoute::Logout => {
            let body = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            parts.extensions.clear();
            pages::login::handle(&state, &ctx, &viewer, &route, &parts, &body).await
        }
        r if api => {
            api::handle(
                &state,
                &viewer,
                &r,
                &parts.method,
                &parts.uri,
                &parts.headers,
            )
            .await
        }
        r => {
            let body = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            pages::handle(&state, &ctx, &viewer, &r, &parts.method, &parts.uri, &body).await
        }
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => return failure(api, Some((&ctx, &viewer)), e),
    };
    if viewer.new_csrf_cookie && !api {
        if let Ok(v) = session::set_cookie(CSRF_COOKIE, &viewer.csrf, 86400, ctx.tls, true).parse()
        {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// An error's answer: JSON for the API, an HTML page otherwise (which
/// clears a dead session cookie).
fn failure(api: bool, page: Option<(&Ctx, &Viewer)>, e: UiError) -> Response {
    let (status, code, message) = e.parts();
    if api {
        return (
            status,
            axum::Json(serde_json::json!({"error": code, "message": message})),
        )
            .into_response();
    }
    let mut response = (status, pages::error_page(page, status, &message, &e)).into_response();
    if matches!(e, UiError::SessionExpired) {
        if let Ok(v) = session::set_cookie(SESSION_COOKIE, "", 0, false, true).parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    if let UiError::Throttled(s) = e {
        if let Ok(v) = s.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    response
}

/// What a page needs to know of the request besides the viewer.
pub struct Ctx {
    /// The registry's host as the client addressed it (for pull commands).
    pub host: String,
    /// Whether the client came over HTTPS.
    pub tls: bool,
}

impl Ctx {
    fn new(state: &AppState, h: &HeaderMap) -> Ctx {
        Ctx {
            host: h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost:5000")
                .to_owned(),
            tls: state.tls,
        }
    }
}

/// Who is viewing: the session cookie's user, a Basic header's user, or
/// anonymous. A dead session is [`UiError::SessionExpired`], unless
/// `lenient` (the login page itself), where it counts as anonymous.
async fn viewer(
    state: &AppState,
    parts: &axum::http::request::Parts,
    lenient: bool,
) -> Result<Viewer, UiError> {
    let live = state.live.get();
    let auth: Option<&Auth> = live.auth.as_ref();
    let h = &parts.headers;
    let mut viewer = Viewer {
        who: Verified::anonymous(),
        session: None,
        auth_on: auth.is_some(),
        csrf: String::new(),
        new_csrf_cookie: false,
        metrics_anonymous: auth.is_none_or(|a| a.metrics_anonymous),
        rules: None,
    };
    let ui = state.ui.as_ref().ok_or(UiError::NotFound("no UI".into()))?;
    if let (Some(auth), Some(id)) = (auth, session::cookie(h, SESSION_COOKIE)) {
        match ui.sessions.get(id).filter(|s| auth.has_user(&s.user)) {
            Some(s) => {
                viewer.who.caller = Caller::User(s.user.clone());
                viewer.csrf = s.csrf.clone();
                viewer.session = Some(s);
            }
            None if lenient => {}
            None => return Err(UiError::SessionExpired),
        }
    }
    if viewer.session.is_none() {
        if let (Some(auth), Some(value)) = (auth, h.get(header::AUTHORIZATION)) {
            let value = value.to_str().map_err(|_| UiError::LoginRequired)?;
            viewer.who = match auth
                .verify(Some(value), crate::routes::peer_ip(parts))
                .await
            {
                Ok(who) => who,
                Err(Refusal::Throttled { retry_after }) => {
                    return Err(UiError::Throttled(retry_after))
                }
                Err(_) => return Err(UiError::LoginRequired),
            };
        }
        match session::cookie(h, CSRF_COOKIE).filter(|c| c.len() == 64) {
            Some(c) => viewer.csrf = c.to_owned(),
            None => {
                viewer.csrf = session::random_token();
                viewer.new_csrf_cookie = true;
            }
        }
    }
    drop(live);
    viewer.rules = Some(state.live.get());
    Ok(viewer)
}

/// Whether a form or API call carries the viewer's CSRF token.
fn csrf_ok(viewer: &Viewer, sent: Option<&str>) -> bool {
    !viewer.csrf.is_empty() && sent.is_some_and(|s| session::same_token(s, &viewer.csrf))
}

/// Whether a request changes something.
fn is_write(m: &Method) -> bool {
    !(m == Method::GET || m == Method::HEAD)
}
