//! `/ui/api/...`: the views of the pages as JSON, for the pages' script and
//! for scripts of your own (docs/ui.md). The same viewer and rules as the
//! pages: a session cookie (writes then need the `X-CSRF-Token` header),
//! a Basic `Authorization` header, or anonymous.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::path::UiRoute;
use super::{csrf_ok, is_write, pages, view, UiError, Viewer};
use crate::auth::Action;
use crate::routes::AppState;

/// The header a session's writes carry the CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";

/// An API route.
pub async fn handle(
    state: &AppState,
    viewer: &Viewer,
    route: &UiRoute,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, UiError> {
    let store = &state.store;
    if is_write(method) && viewer.session.is_some() {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !csrf_ok(viewer, sent) {
            return Err(UiError::Csrf);
        }
    }
    let get = *method == Method::GET;
    Ok(match route {
        UiRoute::ApiSession if get => Json(json!({
            "user": viewer.user(),
            "auth": viewer.auth_on,
            "csrf": viewer.session.as_ref().map(|s| s.csrf.as_str()),
        }))
        .into_response(),
        UiRoute::ApiRepos if get => {
            Json(view::repo_list(store, viewer, &pages::query(uri)?).await?).into_response()
        }
        UiRoute::ApiDashboard if get => {
            pages::dashboard_allowed(viewer)?;
            Json(view::dashboard(state).await?).into_response()
        }
        UiRoute::ApiTags(repo) if get => {
            Json(view::tag_list(store, viewer, repo, &pages::query(uri)?).await?).into_response()
        }
        UiRoute::ApiManifest(repo, reference) if get => {
            Json(view::manifest_view(store, viewer, repo, reference).await?).into_response()
        }
        UiRoute::ApiManifest(repo, reference) if *method == Method::DELETE => {
            view::require_pull(viewer, repo)?;
            if !viewer.may(repo.as_str(), Action::Delete) {
                return Err(UiError::Forbidden);
            }
            store.delete_manifest(repo, reference).await?;
            tracing::info!(user = viewer.user().unwrap_or("-"), %repo, %reference, "ui api delete");
            (
                StatusCode::ACCEPTED,
                Json(json!({"deleted": reference.to_string()})),
            )
                .into_response()
        }
        _ => return Err(UiError::Method),
    })
}
