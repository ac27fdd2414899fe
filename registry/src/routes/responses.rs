//! The success responses of the API, one type each, with the headers the
//! distribution spec asks for (and unit tests on them).

use std::ops::Range;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use store::manifest::OCI_INDEX;
use store::{Descriptor, Digest, RepoName, Tag, UploadId};

use crate::error::upload_range;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// An empty response with `headers` (in order; repeated names kept).
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

/// 201: a blob is stored in `repo` (a monolithic push, a finished upload or a mount).
pub struct BlobCreated<'a> {
    /// The repository.
    pub repo: &'a RepoName,
    /// The blob.
    pub digest: &'a Digest,
}

impl IntoResponse for BlobCreated<'_> {
    fn into_response(self) -> Response {
        response(
            StatusCode::CREATED,
            &[
                (
                    header::LOCATION.as_str(),
                    format!("/v2/{}/blobs/{}", self.repo, self.digest),
                ),
                (DIGEST_HEADER, self.digest.to_string()),
            ],
        )
    }
}

/// 202: an upload session was started or took a chunk.
pub struct UploadAccepted<'a> {
    /// The repository.
    pub repo: &'a RepoName,
    /// The session.
    pub id: &'a UploadId,
    /// Bytes received so far.
    pub size: u64,
}

impl IntoResponse for UploadAccepted<'_> {
    fn into_response(self) -> Response {
        response(
            StatusCode::ACCEPTED,
            &[
                (
                    header::LOCATION.as_str(),
                    format!("/v2/{}/blobs/uploads/{}", self.repo, self.id),
                ),
                (header::RANGE.as_str(), upload_range(self.size)),
                (UPLOAD_UUID_HEADER, self.id.to_string()),
            ],
        )
    }
}

/// 204: where an upload session stands (the headers of [`UploadAccepted`]).
pub struct UploadStatus<'a>(pub UploadAccepted<'a>);

impl IntoResponse for UploadStatus<'_> {
    fn into_response(self) -> Response {
        let mut r = self.0.into_response();
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    }
}

/// 200 or 206: a blob's headers, and its bytes for a GET.
pub struct BlobContent<'a> {
    /// The blob.
    pub digest: &'a Digest,
    /// Its whole size.
    pub size: u64,
    /// The part asked for with `Range`, if any.
    pub range: Option<Range<u64>>,
    /// The bytes (of the range), or empty for a HEAD.
    pub body: Body,
}

impl BlobContent<'_> {
    /// The bytes the response carries (the range's, or the whole blob's).
    pub fn body_len(&self) -> u64 {
        self.range.as_ref().map_or(self.size, |r| r.end - r.start)
    }
}

impl IntoResponse for BlobContent<'_> {
    fn into_response(self) -> Response {
        let status = match self.range {
            Some(_) => StatusCode::PARTIAL_CONTENT,
            None => StatusCode::OK,
        };
        let mut headers = vec![
            (header::CONTENT_LENGTH.as_str(), self.body_len().to_string()),
            (
                header::CONTENT_TYPE.as_str(),
                "application/octet-stream".to_owned(),
            ),
            (DIGEST_HEADER, self.digest.to_string()),
            (header::ACCEPT_RANGES.as_str(), "bytes".to_owned()),
            (header::ETAG.as_str(), format!("\"{}\"", self.digest)),
        ];
        if let Some(r) = &self.range {
            headers.push((
                header::CONTENT_RANGE.as_str(),
                format!("bytes {}-{}/{}", r.start, r.end - 1, self.size),
            ));
        }
        let mut response = response(status, &headers);
        *response.body_mut() = self.body;
        response
    }
}

/// 200: a manifest's headers, and its bytes for a GET.
pub struct ManifestContent<'a> {
    /// The manifest.
    pub digest: &'a Digest,
    /// Its media type.
    pub media_type: &'a str,
    /// Its size.
    pub size: u64,
    /// Its bytes, or `None` for a HEAD.
    pub bytes: Option<Bytes>,
}

impl IntoResponse for ManifestContent<'_> {
    fn into_response(self) -> Response {
        let headers = [
            (header::CONTENT_TYPE.as_str(), self.media_type.to_owned()),
            (header::CONTENT_LENGTH.as_str(), self.size.to_string()),
            (DIGEST_HEADER, self.digest.to_string()),
            (header::ETAG.as_str(), format!("\"{}\"", self.digest)),
        ];
        let mut r = response(StatusCode::OK, &headers);
        if let Some(bytes) = self.bytes {
            *r.body_mut() = Body::from(bytes);
        }
        r
    }
}

/// 201: a manifest is stored, with its subject and the tags now on it.
pub struct ManifestCreated<'a> {
    /// The repository.
    pub repo: &'a RepoName,
    /// The manifest.
    pub digest: &'a Digest,
    /// Its subject, when it has one (`OCI-Subject`).
    pub subject: Option<&'a Digest>,
    /// The tags pointing at it (one `OCI-Tag` each).
    pub tags: &'a [Tag],
}

impl IntoResponse for ManifestCreated<'_> {
    fn into_response(self) -> Response {
        let mut headers = vec![
            (
                header::LOCATION.as_str(),
                format!("/v2/{}/manifests/{}", self.repo, self.digest),
            ),
            (DIGEST_HEADER, self.digest.to_string()),
        ];
        if let Some(subject) = self.subject {
            headers.push(("oci-subject", subject.to_string()));
        }
        for tag in self.tags {
            headers.push(("oci-tag", tag.to_string()));
        }
        response(StatusCode::CREATED, &headers)
    }
}

/// 200: a page of a sorted list of names, with `Link` to the next page when
/// there is one. Fetched with one more item than the page holds, to know.
struct Page<'a> {
    /// The list's key in the body.
    key: &'static str,
    /// The items fetched: up to `n + 1`.
    items: &'a [String],
    /// The page size asked for.
    n: Option<u64>,
    /// The path of the listing, for `Link`.
    base: &'a str,
    /// The repository, for a `name` field before the list.
    name: Option<&'a str>,
}

impl IntoResponse for Page<'_> {
    fn into_response(self) -> Response {
        let mut items = self.items;
        let mut link = None;
        if let Some(n) = self.n {
            if items.len() as u64 > n {
                items = &items[..n as usize];
                if let Some(last) = items.last() {
                    link = Some(format!("<{}?n={n}&last={last}>; rel=\"next\"", self.base));
                }
            }
        }
        // Serialized straight from the strings: a JSON value per item would cost
        // an allocation each, which shows on a 10,000-tag list. Tag and
        // repository names never need escaping, so they are copied as they are
        // (escaping was a quarter of the CPU time of such a listing).
        let mut body = b"{".to_vec();
        if let Some(name) = self.name {
            body.extend_from_slice(b"\"name\":");
            serde_json::to_writer(&mut body, name).expect("string serializes");
            body.push(b',');
        }
        serde_json::to_writer(&mut body, self.key).expect("string serializes");
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
}

/// 200: a page of a repository's tags.
pub struct TagList<'a> {
    /// The repository.
    pub repo: &'a RepoName,
    /// The tags fetched: up to `n + 1`.
    pub tags: &'a [String],
    /// The page size asked for.
    pub n: Option<u64>,
}

impl IntoResponse for TagList<'_> {
    fn into_response(self) -> Response {
        Page {
            key: "tags",
            items: self.tags,
            n: self.n,
            base: &format!("/v2/{}/tags/list", self.repo),
            name: Some(self.repo.as_str()),
        }
        .into_response()
    }
}

/// 200: a page of the catalog.
pub struct Catalog<'a> {
    /// The repositories fetched: up to `n + 1`.
    pub repos: &'a [String],
    /// The page size asked for.
    pub n: Option<u64>,
}

impl IntoResponse for Catalog<'_> {
    fn into_response(self) -> Response {
        Page {
            key: "repositories",
            items: self.repos,
            n: self.n,
            base: "/v2/_catalog",
            name: None,
        }
        .into_response()
    }
}

/// 200: the referrers of a subject, as an OCI image index.
pub struct ReferrerIndex {
    /// The referring manifests.
    pub manifests: Vec<Descriptor>,
    /// Whether an `artifactType` filter was applied (`OCI-Filters-Applied`).
    pub filtered: bool,
}

impl IntoResponse for ReferrerIndex {
    fn into_response(self) -> Response {
        let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests});
        let mut r = axum::Json(body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
        if self.filtered {
            r.headers_mut().insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        r
    }
}

/// 200: a token from the `/token` endpoint.
pub struct TokenIssued {
    /// The signed token.
    pub token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
}

impl IntoResponse for TokenIssued {
    fn into_response(self) -> Response {
        let (token, expires_in) = (self.token, self.expires_in);
        axum::Json(json!({"token": token, "access_token": token, "expires_in": expires_in}))
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn headers(r: &Response, name: &str) -> Vec<String> {
        r.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn blob_created_is_201_with_location_and_digest() {
        let (repo, d) = ("a/b".parse().unwrap(), digest('a'));
        let r = BlobCreated {
            repo: &repo,
            digest: &d,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(headers(&r, "location"), [format!("/v2/a/b/blobs/{d}")]);
        assert_eq!(headers(&r, "docker-content-digest"), [d.to_string()]);
    }

    #[test]
    fn upload_accepted_and_status_carry_location_range_and_uuid() {
        let (repo, id) = ("a".parse().unwrap(), UploadId::new());
        let r = UploadAccepted {
            repo: &repo,
            id: &id,
            size: 0,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            headers(&r, "location"),
            [format!("/v2/a/blobs/uploads/{id}")]
        );
        assert_eq!(headers(&r, "range"), ["0-0"]);
        assert_eq!(headers(&r, "docker-upload-uuid"), [id.to_string()]);
        let r = UploadStatus(UploadAccepted {
            repo: &repo,
            id: &id,
            size: 10,
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(headers(&r, "range"), ["0-9"]);
        assert_eq!(
            headers(&r, "location"),
            [format!("/v2/a/blobs/uploads/{id}")]
        );
    }

    #[test]
    fn blob_content_whole_and_ranged() {
        let d = digest('b');
        let r = BlobContent {
            digest: &d,
            size: 100,
            range: None,
            body: Body::empty(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(headers(&r, "content-length"), ["100"]);
        assert_eq!(headers(&r, "content-type"), ["application/octet-stream"]);
        assert_eq!(headers(&r, "docker-content-digest"), [d.to_string()]);
        assert_eq!(headers(&r, "accept-ranges"), ["bytes"]);
        assert_eq!(headers(&r, "etag"), [format!("\"{d}\"")]);
        assert!(headers(&r, "content-range").is_empty());
        let r = BlobContent {
            digest: &d,
            size: 100,
            range: Some(10..20),
            body: Body::empty(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(headers(&r, "content-length"), ["10"]);
        assert_eq!(headers(&r, "content-range"), ["bytes 10-19/100"]);
    }

    #[tokio::test]
    async fn manifest_content_has_type_length_digest_and_etag() {
        let d = digest('c');
        let r = ManifestContent {
            digest: &d,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            size: 2,
            bytes: Some(Bytes::from_static(b"{}")),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            headers(&r, "content-type"),
            ["application/vnd.oci.image.manifest.v1+json"]
        );
        assert_eq!(headers(&r, "content-length"), ["2"]);
        assert_eq!(headers(&r, "docker-content-digest"), [d.to_string()]);
        assert_eq!(headers(&r, "etag"), [format!("\"{d}\"")]);
        assert_eq!(body(r).await, "{}");
    }

    #[test]
    fn manifest_created_names_subject_and_each_tag() {
        let (repo, d, s) = ("r".parse().unwrap(), digest('d'), digest('e'));
        let tags: Vec<Tag> = vec!["v1".parse().unwrap(), "latest".parse().unwrap()];
        let r = ManifestCreated {
            repo: &repo,
            digest: &d,
            subject: Some(&s),
            tags: &tags,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(headers(&r, "location"), [format!("/v2/r/manifests/{d}")]);
        assert_eq!(headers(&r, "docker-content-digest"), [d.to_string()]);
        assert_eq!(headers(&r, "oci-subject"), [s.to_string()]);
        assert_eq!(headers(&r, "oci-tag"), ["v1", "latest"]);
        let r = ManifestCreated {
            repo: &repo,
            digest: &d,
            subject: None,
            tags: &[],
        }
        .into_response();
        assert!(headers(&r, "oci-subject").is_empty());
        assert!(headers(&r, "oci-tag").is_empty());
    }

    #[tokio::test]
    async fn tag_list_pages_with_link_and_escapes_only_when_needed() {
        let repo = "a/b".parse().unwrap();
        let tags = ["v1".to_owned(), "v2".to_owned(), "v3".to_owned()];
        let r = TagList {
            repo: &repo,
            tags: &tags,
            n: Some(2),
        }
        .into_response();
        assert_eq!(headers(&r, "content-type"), ["application/json"]);
        assert_eq!(
            headers(&r, "link"),
            ["</v2/a/b/tags/list?n=2&last=v2>; rel=\"next\""]
        );
        assert_eq!(body(r).await, r#"{"name":"a/b","tags":["v1","v2"]}"#);
        let r = TagList {
            repo: &repo,
            tags: &tags,
            n: Some(3),
        }
        .into_response();
        assert!(headers(&r, "link").is_empty());
        let odd = ["a\"b".to_owned()];
        let r = Catalog {
            repos: &odd,
            n: None,
        }
        .into_response();
        assert_eq!(body(r).await, r#"{"repositories":["a\"b"]}"#);
    }

    #[tokio::test]
    async fn referrer_index_is_an_oci_index_and_says_when_filtered() {
        let r = ReferrerIndex {
            manifests: Vec::new(),
            filtered: true,
        }
        .into_response();
        assert_eq!(headers(&r, "content-type"), [OCI_INDEX]);
        assert_eq!(headers(&r, "oci-filters-applied"), ["artifactType"]);
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["schemaVersion"], 2);
        let r = ReferrerIndex {
            manifests: Vec::new(),
            filtered: false,
        }
        .into_response();
        assert!(headers(&r, "oci-filters-applied").is_empty());
    }

    #[tokio::test]
    async fn token_issued_gives_token_twice_and_expiry() {
        let r = TokenIssued {
            token: "t".into(),
            expires_in: 300,
        }
        .into_response();
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(
            v,
            json!({"token": "t", "access_token": "t", "expires_in": 300})
        );
    }
}
