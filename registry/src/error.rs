//! The one table of OCI error codes, and the error type every response uses.
//!
//! Each error renders as the spec's body, `{"errors":[{"code","message","detail"}]}`,
//! with the status from the table (or the one the situation calls for, e.g. 416).
//! Internal errors are logged once here and never shown to the client.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store::{Backend, Fault};

/// An OCI distribution error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// The service is unavailable (overloaded): retry later.
    Unavailable,
    /// The storage (or the database) has no space left, or free space is
    /// under the reserve: 507 (code `UNAVAILABLE`, a known one to clients).
    StorageFull,
    /// The storage backend cannot be reached: 503, retry later.
    StorageUnavailable,
    /// The database cannot be reached: 503, retry later.
    DatabaseUnavailable,
    /// Not in the spec: an internal failure, details in the server log.
    Unknown,
}

impl Code {
    /// Code string, default status and message: the single table.
    pub fn entry(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::BlobUnknown => ("BLOB_UNKNOWN", S::NOT_FOUND, "blob unknown to registry"),
            Code::BlobUploadInvalid => {
                ("BLOB_UPLOAD_INVALID", S::BAD_REQUEST, "blob upload invalid")
            }
            Code::BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                S::NOT_FOUND,
                "blob upload unknown to registry",
            ),
            Code::DigestInvalid => (
                "DIGEST_INVALID",
                S::BAD_REQUEST,
                "provided digest did not match uploaded content",
            ),
            Code::ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                S::BAD_REQUEST,
                "manifest references a manifest or blob unknown to registry",
            ),
            Code::ManifestInvalid => ("MANIFEST_INVALID", S::BAD_REQUEST, "manifest invalid"),
            Code::ManifestUnknown => (
                "MANIFEST_UNKNOWN",
                S::NOT_FOUND,
                "manifest unknown to registry",
            ),
            Code::NameInvalid => ("NAME_INVALID", S::BAD_REQUEST, "invalid repository name"),
            Code::NameUnknown => (
                "NAME_UNKNOWN",
                S::NOT_FOUND,
                "repository name not known to registry",
            ),
            Code::SizeInvalid => (
                "SIZE_INVALID",
                S::BAD_REQUEST,
                "provided length did not match content length",
            ),
            Code::Unauthorized => ("UNAUTHORIZED", S::UNAUTHORIZED, "authentication required"),
            Code::Denied => (
                "DENIED",
                S::FORBIDDEN,
                "requested access to the resource is denied",
            ),
            Code::Unsupported => (
                "UNSUPPORTED",
                S::METHOD_NOT_ALLOWED,
                "the operation is unsupported",
            ),
            Code::TooManyRequests => ("TOOMANYREQUESTS", S::TOO_MANY_REQUESTS, "too many requests"),
            Code::Unavailable => ("UNAVAILABLE", S::SERVICE_UNAVAILABLE, "service unavailable"),
            Code::StorageFull => ("UNAVAILABLE", S::INSUFFICIENT_STORAGE, "storage is full"),
            Code::StorageUnavailable => {
                ("UNAVAILABLE", S::SERVICE_UNAVAILABLE, "storage unavailable")
            }
            Code::DatabaseUnavailable => (
                "UNAVAILABLE",
                S::SERVICE_UNAVAILABLE,
                "database unavailable",
            ),
            Code::Unknown => ("UNKNOWN", S::INTERNAL_SERVER_ERROR, "internal server error"),
        }
    }
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: Code,
    status: StatusCode,
    detail: Option<String>,
    message: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the table's status.
    pub fn new(code: Code) -> ApiError {
        ApiError {
            code,
            status: code.entry().1,
            detail: None,
            message: None,
            headers: Vec::new(),
        }
    }

    /// Override the status.
    pub fn status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// Replace the code's standard message: clients such as `docker login`
    /// show only `code: message`.
    pub fn message(mut self, message: impl Into<String>) -> ApiError {
        self.message = Some(message.into());
        self
    }

    /// Attach a detail shown to the client.
    pub fn detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    /// Attach a response header.
    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, v));
        }
        self
    }

    /// The message the client is shown.
    pub fn shown_message(&self) -> &str {
        self.message.as_deref().unwrap_or(self.code.entry().2)
    }

    /// The error's code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// A route that does not exist.
    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(Code::Unsupported)
            .status(StatusCode::NOT_FOUND)
            .detail(format!("no such endpoint: {path}"))
    }
}

/// The `Range` header value for an upload holding `size` bytes.
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// The error for a request body that failed: `code`, or 408 when the client
/// stalled past the idle timeout.
pub fn body_error(code: Code, e: &std::io::Error) -> ApiError {
    let error = ApiError::new(code);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return error.status(StatusCode::REQUEST_TIMEOUT);
            }
            cause = io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static));
        } else {
            cause = c.source();
        }
    }
    error
}

/// Seconds a client is asked to wait when a backend is unavailable.
pub const BACKEND_RETRY_AFTER_SECS: u64 = 5;

/// The answer to a backend fault, logged here once with its cause (which
/// the client never sees): 507 when there is no space, 503 with
/// `Retry-After` when the backend is unreachable or slow (503 without it
/// when it refuses our permissions: retrying cannot help), 500
/// when it reports corrupt data.
fn backend_fault(backend: Backend, fault: Fault, e: &store::Error) -> ApiError {
    let (code, log) = match (backend, fault) {
        (_, Fault::Full) => (Code::StorageFull, "storage full: no space left for a write"),
        (Backend::Storage, Fault::Unavailable) => (Code::StorageUnavailable, "storage unavailable"),
        (Backend::Storage, Fault::Timeout) => {
            (Code::StorageUnavailable, "storage unavailable: timed out")
        }
        (Backend::Storage, Fault::Permission) => (
            Code::StorageUnavailable,
            "storage unavailable: permission denied (fix the storage's permissions or credentials)",
        ),
        (Backend::Database, Fault::Unavailable) => {
            (Code::DatabaseUnavailable, "database unavailable")
        }
        (Backend::Database, Fault::Timeout) => {
            (Code::DatabaseUnavailable, "database unavailable: timed out")
        }
        (Backend::Database, Fault::Permission) => (
            Code::DatabaseUnavailable,
            "database unavailable: permission denied (fix the database's permissions)",
        ),
        (_, Fault::Corrupt) => {
            tracing::error!(backend = backend.name(), error = %e, "backend reports corrupt data: run registry fsck");
            return ApiError::new(Code::Unknown);
        }
    };
    tracing::warn!(backend = backend.name(), fault = fault.name(), error = %e, "{log}");
    match fault {
        Fault::Full => ApiError::new(code).detail(match backend {
            Backend::Storage => "no space left for the content",
            Backend::Database => "no space left for the metadata",
        }),
        // Only an operator can fix a refused permission: no Retry-After that
        // would keep clients retrying.
        _ if !fault.transient() => {
            ApiError::new(code).detail("the operator must fix its permissions")
        }
        _ => ApiError::new(code)
            .detail("retry later")
            .header(header::RETRY_AFTER, BACKEND_RETRY_AFTER_SECS.to_string()),
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        use store::Error as E;
        if let Some((backend, fault)) = e.fault() {
            return backend_fault(backend, fault, &e);
        }
        let detail = e.to_string();
        let error = match &e {
            E::DigestInvalid { .. } | E::DigestUnsupported { .. } | E::DigestMismatch { .. } => {
                ApiError::new(Code::DigestInvalid)
            }
            E::NameInvalid { .. } => ApiError::new(Code::NameInvalid),
            E::TagInvalid { .. } | E::ManifestInvalid { .. } | E::DescriptorSizeMismatch { .. } => {
                ApiError::new(Code::ManifestInvalid)
            }
            E::NameUnknown { .. } => ApiError::new(Code::NameUnknown),
            E::BlobUnknown { .. } => ApiError::new(Code::BlobUnknown),
            E::UploadUnknown { .. } => ApiError::new(Code::BlobUploadUnknown),
            E::UploadOutOfOrder { offset, .. } | E::UploadBusy { offset } => {
                ApiError::new(Code::BlobUploadInvalid)
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::RANGE, upload_range(*offset))
            }
            E::SizeMismatch { .. } => ApiError::new(Code::SizeInvalid),
            E::BodyIncomplete { source } => body_error(Code::BlobUploadInvalid, source),
            E::ManifestTooLarge { .. } => {
                ApiError::new(Code::SizeInvalid).status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            E::ManifestUnknown { .. } => ApiError::new(Code::ManifestUnknown),
            E::ManifestBlobUnknown { .. } => ApiError::new(Code::ManifestBlobUnknown),
            E::QuotaExceeded {
                quota,
                used,
                adding,
                limit,
            } => return crate::policy::quota::refusal(quota, *used, *adding, *limit),
            _ => {
                tracing::error!(error = %e, "internal error");
                return ApiError::new(Code::Unknown);
            }
        };
        error.detail(detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _, message) = self.code.entry();
        let message = self.message.as_deref().unwrap_or(message);
        let body = json!({"errors": [{"code": code, "message": message, "detail": self.detail}]});
        let mut response = (self.status, axum::Json(body)).into_response();
        // For the middleware's counters (see crate::faults).
        response.extensions_mut().insert(self.code);
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_chunk_is_416_with_range() {
        let e: ApiError = store::Error::UploadOutOfOrder {
            start: 5,
            offset: 10,
        }
        .into();
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()[header::RANGE], "0-9");
    }

    /// Status, headers and OCI error body of the answer to `e`, and the code
    /// the middleware counts.
    async fn answer(e: store::Error) -> (StatusCode, axum::http::HeaderMap, String, Code) {
        let r = ApiError::from(e).into_response();
        let (status, headers) = (r.status(), r.headers().clone());
        let counted = *r.extensions().get::<Code>().expect("code extension");
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            headers,
            String::from_utf8(body.to_vec()).unwrap(),
            counted,
        )
    }

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn local_enospc_and_edquot_are_507_storage_is_full() {
        // Linux's ENOSPC and EDQUOT.
        for errno in [28, 122] {
            let e = store::Error::from(object_store::Error::Generic {
                store: "local",
                source: Box::new(std::io::Error::from_raw_os_error(errno)),
            });
            let (status, headers, body, counted) = answer(e).await;
            assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "errno {errno}");
            assert!(body.contains(r#""message":"storage is full""#), "{body}");
            assert!(!body.contains("os error"), "{body}");
            assert!(!headers.contains_key(header::RETRY_AFTER));
            assert_eq!(counted, Code::StorageFull);
        }
    }

    #[tokio::test]
    async fn a_refused_permission_is_503_without_retry_after() {
        // EACCES and EROFS: nothing a client's retry can fix.
        for errno in [13, 30] {
            let e = store::Error::from(object_store::Error::Generic {
                store: "local",
                source: Box::new(std::io::Error::from_raw_os_error(errno)),
            });
            let (status, headers, body, counted) = answer(e).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "errno {errno}");
            assert!(!headers.contains_key(header::RETRY_AFTER), "errno {errno}");
            assert!(!body.contains("os error"), "{body}");
            assert_eq!(counted, Code::StorageUnavailable);
        }
    }

    #[tokio::test]
    async fn s3_refused_connection_is_503_storage_unavailable() {
        let port = closed_port();
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true)
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap();
        let err = object_store::ObjectStore::head(&s3, &"blobs".into())
            .await
            .unwrap_err();
        let (status, headers, body, counted) = answer(store::Error::from(err)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert!(
            body.contains(r#""message":"storage unavailable""#),
            "{body}"
        );
        assert!(
            !body.contains("127.0.0.1") && !body.contains(&port.to_string()),
            "{body}"
        );
        assert_eq!(counted, Code::StorageUnavailable);
    }

    #[tokio::test]
    async fn postgres_pool_timeout_and_io_errors_are_503_database_unavailable() {
        let port = closed_port();
        let refused = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(200))
            .connect(&format!("postgres://u:p@127.0.0.1:{port}/db"))
            .await
            .unwrap_err();
        let broken = sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into());
        for e in [refused, sqlx::Error::PoolTimedOut, broken] {
            let (status, headers, body, counted) = answer(store::Error::from(e)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(headers[header::RETRY_AFTER], "5");
            assert!(
                body.contains(r#""message":"database unavailable""#),
                "{body}"
            );
            assert!(
                !body.contains("127.0.0.1") && !body.contains("pool"),
                "{body}"
            );
            assert_eq!(counted, Code::DatabaseUnavailable);
        }
    }

    #[test]
    fn internal_errors_hide_details() {
        let e: ApiError = store::Error::Corrupt {
            detail: "secret path".into(),
        }
        .into();
        assert_eq!(e.code(), Code::Unknown);
        assert!(e.detail.is_none());
    }
}
