//! `GET`/`POST /token`: the Docker token flow. The caller logs in with Basic
//! credentials (GET) or the OAuth2 password form (POST) and gets a token
//! granting the asked `scope`s as far as the rules allow.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::request::{bad_query, header_str, peer_ip, read_limited, Query};
use super::responses::TokenIssued;
use super::AppState;
use crate::auth::policy::throttled;
use crate::auth::Refusal;
use crate::error::{ApiError, Code};

/// The largest form body accepted.
const FORM_LIMIT: usize = 64 * 1024;

/// The `/token` handler.
/// A refused login goes to the audit log.
pub async fn token(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let pending = crate::audit::Pending::of(&request, None);
    let response = issue_token(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    state.audit.record(pending, None, &response);
    response
}

async fn issue_token(state: &AppState, request: Request) -> Result<Response, ApiError> {
    let live = state.live.get();
    let Some(auth) = &live.auth else {
        return Err(ApiError::not_found("/token"));
    };
    let (parts, body) = request.into_parts();
    let mut params = Query::parse(&parts.uri)?.0;
    let mut authorization = header_str(&parts.headers, header::AUTHORIZATION).map(str::to_owned);
    if parts.method == Method::POST {
        let form = read_limited(body, FORM_LIMIT).await?;
        let form = Query::decode(std::str::from_utf8(&form).map_err(|_| bad_query())?)?;
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
    let who = auth
        .verify(authorization.as_deref(), peer_ip(&parts))
        .await
        .map_err(|r| match r {
            Refusal::Throttled { retry_after } => throttled(retry_after),
            _ => ApiError::new(Code::Unauthorized)
                .message("invalid username or password")
                .detail("invalid username or password")
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"strata\""),
        })?;
    let scopes: Vec<String> = Query(params).all("scope").map(str::to_owned).collect();
    let (token, expires_in) = auth.issue_token(&who.caller, &scopes);
    Ok(TokenIssued { token, expires_in }.into_response())
}
