//! The one parser of `/ui/...` paths. Repository names hold `/`, so the
//! parts after a name follow a `/-/` separator (no name component is `-`):
//!
//! ```text
//! /ui/                                  repositories (?q= &mode=prefix|substring &sort=name|size|pushed &page=)
//! /ui/dashboard                         storage, dedup, uploads, GC
//! /ui/login  /ui/logout                 sign in (GET form, POST) and out (POST)
//! /ui/assets/<file>                     style.css, app.js (embedded)
//! /ui/r/<name>                          a repository: its tags (?last= &n=)
//! /ui/r/<name>/-/manifest/<reference>   an image or index, by tag or digest
//! /ui/r/<name>/-/delete                 GET: confirm (?reference=), POST: delete
//! /ui/api/session                       who is signed in, the CSRF token
//! /ui/api/repositories                  the repository list (same query as /ui/)
//! /ui/api/dashboard                     the dashboard's figures
//! /ui/api/r/<name>/-/tags               a tag page (?last= &n=)
//! /ui/api/r/<name>/-/manifests/<ref>    GET: an image or index; DELETE: delete it
//! ```

use store::{Reference, RepoName};

/// A parsed `/ui/...` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiRoute {
    /// The repository list.
    Repos,
    /// The dashboard.
    Dashboard,
    /// The login form and its submission.
    Login,
    /// Sign out.
    Logout,
    /// An embedded asset.
    Asset(String),
    /// A repository's tags.
    Repo(RepoName),
    /// An image or index.
    Manifest(RepoName, Reference),
    /// Delete a tag or manifest (confirmation and submission).
    Delete(RepoName),
    /// `/ui/api/session`.
    ApiSession,
    /// `/ui/api/repositories`.
    ApiRepos,
    /// `/ui/api/dashboard`.
    ApiDashboard,
    /// `/ui/api/r/<name>/tags`.
    ApiTags(RepoName),
    /// `/ui/api/r/<name>/manifests/<reference>`.
    ApiManifest(RepoName, Reference),
}

impl UiRoute {
    /// Whether the route answers JSON (errors too).
    pub fn is_api(path: &str) -> bool {
        path.starts_with("/ui/api/")
    }
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadPath {
    /// No such page.
    NotFound,
    /// A malformed repository name, tag or digest.
    Malformed(String),
}

fn repo(name: &str) -> Result<RepoName, BadPath> {
    name.parse()
        .map_err(|e: store::Error| BadPath::Malformed(e.to_string()))
}

fn reference(text: &str) -> Result<Reference, BadPath> {
    text.parse()
        .map_err(|e: store::Error| BadPath::Malformed(e.to_string()))
}

/// Parse a request path that starts with `/ui`.
pub fn parse(path: &str) -> Result<UiRoute, BadPath> {
    let rest = path.strip_prefix("/ui/").ok_or(BadPath::NotFound)?;
    match rest {
        "" => return Ok(UiRoute::Repos),
        "dashboard" => return Ok(UiRoute::Dashboard),
        "login" => return Ok(UiRoute::Login),
        "logout" => return Ok(UiRoute::Logout),
        "api/session" => return Ok(UiRoute::ApiSession),
        "api/repositories" => return Ok(UiRoute::ApiRepos),
        "api/dashboard" => return Ok(UiRoute::ApiDashboard),
        _ => {}
    }
    if let Some(file) = rest.strip_prefix("assets/") {
        return Ok(UiRoute::Asset(file.to_owned()));
    }
    if let Some(r) = rest.strip_prefix("api/r/") {
        let (name, tail) = r.split_once("/-/").ok_or(BadPath::NotFound)?;
        let name = repo(name)?;
        return match tail.split_once('/') {
            None if tail == "tags" => Ok(UiRoute::ApiTags(name)),
            Some(("manifests", re)) => Ok(UiRoute::ApiManifest(name, reference(re)?)),
            _ => Err(BadPath::NotFound),
        };
    }
    let r = rest.strip_prefix("r/").ok_or(BadPath::NotFound)?;
    let Some((name, tail)) = r.split_once("/-/") else {
        return Ok(UiRoute::Repo(repo(r.trim_end_matches('/'))?));
    };
    let name = repo(name)?;
    match tail.split_once('/') {
        None if tail == "delete" => Ok(UiRoute::Delete(name)),
        Some(("manifest", re)) => Ok(UiRoute::Manifest(name, reference(re)?)),
        _ => Err(BadPath::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_slashes_and_references() {
        assert_eq!(
            parse("/ui/r/team/app/-/manifest/v1"),
            Ok(UiRoute::Manifest(
                "team/app".parse().unwrap(),
                "v1".parse().unwrap()
            ))
        );
        assert_eq!(
            parse("/ui/r/a/b/c"),
            Ok(UiRoute::Repo("a/b/c".parse().unwrap()))
        );
        assert_eq!(
            parse("/ui/api/r/a/-/tags"),
            Ok(UiRoute::ApiTags("a".parse().unwrap()))
        );
        assert_eq!(
            parse("/ui/r/a/-/delete"),
            Ok(UiRoute::Delete("a".parse().unwrap()))
        );
    }

    #[test]
    fn malformed_digest_and_unknown_pages() {
        assert!(matches!(
            parse("/ui/r/a/-/manifest/sha256:zz"),
            Err(BadPath::Malformed(_))
        ));
        assert!(matches!(parse("/ui/r/UPPER"), Err(BadPath::Malformed(_))));
        assert_eq!(parse("/ui/nope"), Err(BadPath::NotFound));
        assert_eq!(parse("/ui/r/a/-/what"), Err(BadPath::NotFound));
    }
}
