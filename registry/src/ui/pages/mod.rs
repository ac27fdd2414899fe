//! The HTML pages (maud templates, escaped by construction): the layout
//! every page shares, formatting helpers, the error page, the embedded
//! assets, and the dispatch of page routes to their modules.
//!
//! ```text
//! pages (handle, layout, error_page, asset, fmt helpers)
//!  ├── login      GET/POST /ui/login, POST /ui/logout
//!  ├── repos      the repository list
//!  ├── repo       a repository's tags; the delete confirmation and submission
//!  ├── image      an image or index: platforms, layers, config, referrers
//!  └── dashboard  storage, dedup, uploads, GC
//! ```

mod dashboard;
mod image;
pub mod login;
mod repo;
mod repos;

use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::path::UiRoute;
use super::{view, Ctx, UiError, Viewer};
use crate::routes::AppState;

const STYLE: &str = include_str!("../../../ui/style.css");
const SCRIPT: &str = include_str!("../../../ui/app.js");

/// An embedded asset.
pub fn asset(name: &str) -> Response {
    let (body, kind) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A page route.
pub async fn handle(
    state: &AppState,
    ctx: &Ctx,
    viewer: &Viewer,
    route: &UiRoute,
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<Response, UiError> {
    let get = *method == Method::GET || *method == Method::HEAD;
    let store = &state.store;
    let page = match route {
        UiRoute::Repos if get => {
            let q = query(uri)?;
            repos::render(ctx, viewer, &view::repo_list(store, viewer, &q).await?)
        }
        UiRoute::Dashboard if get => {
            dashboard_allowed(viewer)?;
            dashboard::render(ctx, viewer, &view::dashboard(state).await?)
        }
        UiRoute::Repo(name) if get => {
            let q: view::TagQuery = query(uri)?;
            let deleted = query::<Notice>(uri)?.deleted;
            let list = view::tag_list(store, viewer, name, &q).await?;
            repo::render(ctx, viewer, &list, deleted.as_deref())
        }
        UiRoute::Manifest(name, reference) => {
            if !get {
                return Err(UiError::Method);
            }
            image::render(
                ctx,
                viewer,
                &view::manifest_view(store, viewer, name, reference).await?,
            )
        }
        UiRoute::Delete(name) if get => repo::confirm_delete(ctx, viewer, store, name, uri).await?,
        UiRoute::Delete(name) if *method == Method::POST => {
            return repo::delete(store, viewer, name, body).await
        }
        _ => return Err(UiError::Method),
    };
    Ok(page_response(page))
}

/// The `?deleted=` notice after a delete.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Notice {
    deleted: Option<String>,
}

/// The dashboard is open as `/metrics` is: to users, or to anyone when
/// auth is off or `metrics_anonymous` is set.
pub fn dashboard_allowed(viewer: &Viewer) -> Result<(), UiError> {
    if viewer.is_anonymous() && !viewer.metrics_anonymous {
        Err(UiError::LoginRequired)
    } else {
        Ok(())
    }
}

/// Parse the query string into `T` (a bad one is a 400 page).
pub fn query<T: serde::de::DeserializeOwned + Default>(uri: &Uri) -> Result<T, UiError> {
    match uri.query() {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| UiError::BadRequest(e.to_string())),
    }
}

/// A page, with headers that keep it from being framed or cached.
pub fn page_response(page: Markup) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            ),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        page.into_string(),
    )
        .into_response()
}

/// The frame of every page: skip link, header with navigation and login
/// state, the main content.
pub fn layout(ctx: Option<&Ctx>, viewer: Option<&Viewer>, title: &str, body: Markup) -> Markup {
    let _ = ctx;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Strata registry" }
                link rel="stylesheet" href="/ui/assets/style.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "Strata" }
                    nav aria-label="Main" {
                        a href="/ui/" { "Repositories" }
                        a href="/ui/dashboard" { "Dashboard" }
                    }
                    div.who {
                        @match viewer {
                            Some(v) if v.user().is_some() => {
                                span { "Signed in as " strong { (v.user().unwrap_or_default()) } }
                                @if v.session.is_some() {
                                    form method="post" action="/ui/logout" {
                                        input type="hidden" name="csrf" value=(v.csrf);
                                        button type="submit" { "Log out" }
                                    }
                                }
                            }
                            Some(v) if v.auth_on => { a href="/ui/login" { "Log in" } }
                            _ => {}
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// The error page: status, message, and a way on.
pub fn error_page(
    page: Option<(&Ctx, &Viewer)>,
    status: StatusCode,
    message: &str,
    e: &UiError,
) -> Response {
    let login = matches!(e, UiError::LoginRequired | UiError::SessionExpired);
    let markup = layout(
        page.map(|p| p.0),
        page.map(|p| p.1),
        status.canonical_reason().unwrap_or("Error"),
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
            p.error role="alert" { (message) }
            p {
                @if login { a href="/ui/login" { "Log in" } " · " }
                a href="/ui/" { "Back to the repositories" }
            }
        },
    );
    let mut r = page_response(markup);
    *r.status_mut() = status;
    r
}

pub use crate::units::bytes;

/// `2026-12-02 01:47 UTC` (or `never` for 0).
pub fn time(secs: i64) -> String {
    if secs <= 0 {
        return "never".into();
    }
    // `2026-12-02T01:47:05.000Z` -> `2026-12-02 01:47 UTC`
    let full = crate::rfc3339::format_ms(secs.saturating_mul(1000));
    format!("{} {} UTC", &full[..10], &full[11..16])
}

/// `sha256:0123456789ab` (the first 12 hex digits).
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(0, |i| i + 13).min(digest.len());
    &digest[..end]
}

/// A media type's short name.
pub fn kind(media_type: &str) -> &'static str {
    match media_type {
        store::manifest::OCI_INDEX => "OCI index",
        store::manifest::OCI_MANIFEST => "OCI image",
        store::manifest::DOCKER_LIST => "Docker list",
        store::manifest::DOCKER_MANIFEST => "Docker image",
        _ => "other",
    }
}

/// The link to a manifest's page.
pub fn manifest_href(repo: &str, reference: &str) -> String {
    format!("/ui/r/{repo}/-/manifest/{reference}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(time(0), "never");
        assert_eq!(time(1_796_183_220), "2026-12-02 03:47 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(short("sha256:0123456789abcdef"), "sha256:0123456789ab");
    }
}
