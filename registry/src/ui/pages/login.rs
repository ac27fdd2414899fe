//! `/ui/login` (the form, and checking it with the registry's own users)
//! and `/ui/logout`.

use axum::http::{header, request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use maud::html;

use super::{layout, page_response};
use crate::auth::Refusal;
use crate::routes::AppState;
use crate::ui::path::UiRoute;
use crate::ui::session::{set_cookie, SESSION_COOKIE, SESSION_TTL};
use crate::ui::{csrf_ok, Ctx, UiError, Viewer};

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    username: String,
    password: String,
    next: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    csrf: String,
}

/// Only a path inside the UI may be where a login leads (no open redirect).
fn next_or_home(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/ui/"
    }
}

/// Login and logout.
pub async fn handle(
    state: &AppState,
    ctx: &Ctx,
    viewer: &Viewer,
    route: &UiRoute,
    parts: &Parts,
    body: &[u8],
) -> Result<Response, UiError> {
    let ui = state.ui.as_ref().ok_or(UiError::NotFound("no UI".into()))?;
    match (route, &parts.method) {
        (UiRoute::Logout, &Method::POST) => {
            let form: LogoutForm = serde_urlencoded::from_bytes(body)
                .map_err(|e| UiError::BadRequest(e.to_string()))?;
            if let Some(s) = &viewer.session {
                if !csrf_ok(viewer, Some(&form.csrf)) {
                    return Err(UiError::Csrf);
                }
                ui.sessions.remove(&s.id);
            }
            let mut r = Redirect::to("/ui/login").into_response();
            if let Ok(v) = set_cookie(SESSION_COOKIE, "", 0, ctx.tls, true).parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        (UiRoute::Login, &Method::GET) => {
            let next: LoginForm = super::query(&parts.uri)?;
            Ok(form(ctx, viewer, StatusCode::OK, None, &next.next))
        }
        (UiRoute::Login, &Method::POST) => {
            let live = state.live.get();
            let Some(auth) = live.auth.as_ref() else {
                return Ok(Redirect::to("/ui/").into_response());
            };
            let f: LoginForm = serde_urlencoded::from_bytes(body)
                .map_err(|e| UiError::BadRequest(e.to_string()))?;
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", f.username, f.password));
            let peer = crate::routes::peer_ip(parts);
            match auth.verify(Some(&format!("Basic {basic}")), peer).await {
                Ok(who) if !f.username.is_empty() => {
                    let session = ui.sessions.create(who.caller.name());
                    tracing::info!(user = %session.user, "ui login");
                    let mut r = Redirect::to(next_or_home(&f.next)).into_response();
                    let cookie = set_cookie(
                        SESSION_COOKIE,
                        &session.id,
                        SESSION_TTL.as_secs(),
                        ctx.tls,
                        true,
                    );
                    if let Ok(v) = cookie.parse() {
                        r.headers_mut().append(header::SET_COOKIE, v);
                    }
                    Ok(r)
                }
                Err(Refusal::Throttled { retry_after }) => Err(UiError::Throttled(retry_after)),
                _ => Ok(form(
                    ctx,
                    viewer,
                    StatusCode::UNAUTHORIZED,
                    Some("Wrong user name or password."),
                    &f.next,
                )),
            }
        }
        _ => Err(UiError::Method),
    }
}

fn form(
    ctx: &Ctx,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<&str>,
    next: &str,
) -> Response {
    let body = html! {
        h1 { "Log in" }
        @if !viewer.auth_on {
            p { "This registry has no access control: everyone may see everything. "
                a href="/ui/" { "Browse the repositories" } "." }
        } @else {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next_or_home(next));
                label for="username" { "User name" }
                input #username type="text" name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
            p.hint { "The registry's own users (its htpasswd file), as for docker login." }
        }
    };
    let mut r = page_response(layout(Some(ctx), Some(viewer), "Log in", body));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::next_or_home;

    #[test]
    fn logins_lead_only_inside_the_ui() {
        assert_eq!(next_or_home("/ui/r/a"), "/ui/r/a");
        assert_eq!(next_or_home("https://evil.example/"), "/ui/");
        assert_eq!(next_or_home("//evil.example/ui/"), "/ui/");
        assert_eq!(next_or_home(""), "/ui/");
    }
}
