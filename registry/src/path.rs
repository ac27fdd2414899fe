//! The one parser of `/v2/...` paths.
//!
//! Repository names may hold any number of `/` components, including ones
//! spelled like endpoints (`a/blobs/b`), so the endpoint is matched from the
//! end of the path and everything before it is the name.

use store::{Digest, Reference, RepoName, UploadId};

use crate::error::{ApiError, Code};

/// An API endpoint with its validated path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/manifests/<reference>` whose reference is neither a valid
    /// tag nor a valid digest (kept as sent): no such manifest can exist, so
    /// reads answer 404 `MANIFEST_UNKNOWN` as distribution does; writes get
    /// the parse error.
    BadManifestReference(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, UploadId),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
}

impl Route {
    /// A short label for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(..) => "tags",
            Route::Manifest(..) | Route::BadManifestReference(..) => "manifest",
            Route::Referrers(..) => "referrers",
            Route::Uploads(..) => "uploads",
            Route::Upload(..) => "upload",
            Route::Blob(..) => "blob",
        }
    }

    /// The repository the route is about, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(r)
            | Route::Manifest(r, _)
            | Route::BadManifestReference(r, _)
            | Route::Referrers(r, _)
            | Route::Uploads(r)
            | Route::Upload(r, _)
            | Route::Blob(r, _) => Some(r),
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parse a request path.
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let not_found = || ApiError::not_found(path);
    let rest = match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        _ => path.strip_prefix("/v2/").ok_or_else(not_found)?,
    };
    let rest = percent_decode(rest)
        .ok_or_else(|| ApiError::new(Code::NameInvalid).detail("bad percent-encoding"))?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let name = |n: usize| -> Result<RepoName, ApiError> {
        if n == 0 {
            return Err(not_found());
        }
        Ok(segs[..n].join("/").parse::<RepoName>()?)
    };
    let len = segs.len();
    let tail = |k: usize| -> &[&str] { &segs[len.saturating_sub(k)..] };
    match (len, tail(3), tail(2)) {
        (l, [_, "tags", "list"], _) if l >= 3 => Ok(Route::Tags(name(l - 2)?)),
        (l, ["blobs", "uploads", ""], _) if l >= 4 => Ok(Route::Uploads(name(l - 3)?)),
        (l, _, ["blobs", "uploads"]) if l >= 3 => Ok(Route::Uploads(name(l - 2)?)),
        (l, ["blobs", "uploads", id], _) if l >= 4 => {
            let repo = name(l - 3)?;
            Ok(Route::Upload(repo, id.parse()?))
        }
        (l, _, ["manifests", r]) if l >= 3 => {
            let repo = name(l - 2)?;
            Ok(match r.parse() {
                Ok(reference) => Route::Manifest(repo, reference),
                Err(_) => Route::BadManifestReference(repo, (*r).to_owned()),
            })
        }
        (l, _, ["referrers", d]) if l >= 3 => {
            let repo = name(l - 2)?;
            Ok(Route::Referrers(repo, d.parse()?))
        }
        (l, _, ["blobs", d]) if l >= 3 => {
            let repo = name(l - 2)?;
            Ok(Route::Blob(repo, d.parse()?))
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn names_with_many_components_and_endpoint_words() {
        let r = parse(&format!("/v2/a/blobs/manifests/b/c/d/blobs/{}", digest())).unwrap();
        assert_eq!(
            r,
            Route::Blob(
                "a/blobs/manifests/b/c/d".parse().unwrap(),
                digest().parse().unwrap()
            )
        );
        let r = parse("/v2/x/y/tags/list").unwrap();
        assert_eq!(r, Route::Tags("x/y".parse().unwrap()));
        let r = parse("/v2/x/manifests/tags/list").unwrap();
        assert_eq!(r, Route::Tags("x/manifests".parse().unwrap()));
    }

    #[test]
    fn uploads_with_and_without_slash() {
        assert_eq!(
            parse("/v2/a/blobs/uploads/").unwrap(),
            Route::Uploads("a".parse().unwrap())
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads").unwrap(),
            Route::Uploads("a".parse().unwrap())
        );
        let id = UploadId::new();
        assert_eq!(
            parse(&format!("/v2/a/b/blobs/uploads/{id}")).unwrap(),
            Route::Upload("a/b".parse().unwrap(), id)
        );
    }

    #[test]
    fn percent_encoded_digest() {
        let r = parse(&format!("/v2/a/manifests/sha256%3A{}", "a".repeat(64))).unwrap();
        assert!(matches!(r, Route::Manifest(_, Reference::Digest(_))));
    }

    #[test]
    fn bad_paths_give_spec_errors() {
        assert_eq!(
            parse("/v2/A/tags/list").unwrap_err().code(),
            Code::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/../b/tags/list").unwrap_err().code(),
            Code::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256:zz").unwrap_err().code(),
            Code::DigestInvalid
        );
        assert_eq!(
            parse("/v2/a/manifests/bad!tag").unwrap(),
            Route::BadManifestReference("a".parse().unwrap(), "bad!tag".into())
        );
        assert_eq!(parse("/v2/a").unwrap_err().code(), Code::Unsupported);
        assert_eq!(
            parse("/v2/tags/list").unwrap_err().code(),
            Code::Unsupported
        );
        assert_eq!(parse("/elsewhere").unwrap_err().code(), Code::Unsupported);
        assert_eq!(
            parse("/v2/a/blobs/uploads/not-a-uuid").unwrap_err().code(),
            Code::BlobUploadUnknown
        );
    }
}
