//! The authorization of one request: which (repository, action) it needs,
//! who the caller is, whether the rules and its token allow it, and where a
//! cross-repository mount may link from. A refusal becomes the API's answer
//! here: 401 with a `WWW-Authenticate` challenge naming the scope to ask
//! for, 403, or 429.

use std::net::IpAddr;

use axum::http::{header, Method};
use store::{Digest, RepoName, Store};

use super::{Action, Auth, Caller, Refusal, Verified, NARROW_TOKEN};
use crate::error::{ApiError, Code};
use crate::path::Route;

/// What [`authorize`] looks at in a request.
pub struct AccessRequest<'a> {
    /// The parsed route.
    pub route: &'a Route,
    /// The method.
    pub method: &'a Method,
    /// The `mount` query parameter (a digest), if any.
    pub mount: Option<&'a str>,
    /// The `from` query parameter (a repository), if any.
    pub from: Option<&'a str>,
    /// The `Authorization` header, when it is readable text.
    pub authorization: Option<&'a str>,
    /// Whether an `Authorization` header was sent at all.
    pub sent_credentials: bool,
    /// The host the client addressed (for the token realm).
    pub host: &'a str,
    /// The client's address (for the failed-login limits).
    pub peer: Option<IpAddr>,
}

/// An authenticated caller, with what the request may use beyond its needs.
pub struct Access {
    /// Who the caller is, with its token's grants.
    pub who: Verified,
    /// Where a mount may link from: a candidate the caller may pull, or
    /// `None` (the mount is then a plain upload).
    pub mount_from: Option<RepoName>,
}

/// Whether `m` only reads.
pub fn is_read(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

/// What a request needs: the (repository, action) it must be allowed.
///
/// A mount's source is not among them: a caller who may not pull `from` gets
/// a plain upload session, as if the blob were not there.
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
fn mount_source<'q>(req: &AccessRequest<'q>) -> Option<&'q str> {
    match req.route {
        Route::Uploads(_) if req.mount.is_some() => req.from,
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
    req: &AccessRequest<'_>,
) -> Result<Vec<RepoName>, ApiError> {
    let (Route::Uploads(repo), Some(mount)) = (req.route, req.mount) else {
        return Ok(Vec::new());
    };
    if let Some(from) = req.from {
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

/// Authenticate the caller and check every permission the request needs.
/// Without `auth` (no access rules) everyone may do everything.
pub async fn authorize(
    auth: Option<&Auth>,
    tls: bool,
    store: &Store,
    req: &AccessRequest<'_>,
) -> Result<Access, ApiError> {
    let Some(auth) = auth else {
        let candidates = mount_candidates(store, req).await?;
        return Ok(Access {
            who: Verified::anonymous(),
            mount_from: candidates.into_iter().next(),
        });
    };
    let needs = needs(req.route, req.method);
    let scope_with = |source: Option<&str>| match (req.route, &needs) {
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
            let error = match (req.sent_credentials, reason) {
                (false, _) => None,
                (true, NARROW_TOKEN) => Some("insufficient_scope"),
                (true, _) => Some("invalid_token"),
            };
            // With credentials sent, say what was wrong with them in the
            // message too: `docker login` shows only the message.
            let message = if req.sent_credentials {
                reason
            } else {
                "authentication required"
            };
            ApiError::new(Code::Unauthorized)
                .message(message)
                .detail(reason)
                .header(
                    header::WWW_AUTHENTICATE,
                    auth.challenge(req.host, tls, scope_with(source).as_deref(), error),
                )
        }
    };
    let refuse = |r: Refusal| refuse_with(r, mount_source(req));
    let who: Verified = auth
        .verify(req.authorization, req.peer)
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
    let candidates = mount_candidates(store, req).await?;
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

/// 429 after too many failed logins.
pub fn throttled(retry_after: u64) -> ApiError {
    ApiError::new(Code::TooManyRequests)
        .detail(format!("too many failed logins; retry in {retry_after} s"))
        .header(header::RETRY_AFTER, retry_after.to_string())
}
