//! The one table of OCI error codes, and the error type every response uses.
//!
//! Each error renders as the spec's body, `{"errors":[{"code","message","detail"}]}`,
//! with the status from the table (or the one the situation calls for, e.g. 416).
//! Internal errors are logged once here and never shown to the client.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the table's status.
    pub fn new(code: Code) -> ApiError {
        ApiError {
            code,
            status: code.entry().1,
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Override the status.
    pub fn status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
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

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        use store::Error as E;
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
        let body = json!({"errors": [{"code": code, "message": message, "detail": self.detail}]});
        let mut response = (self.status, axum::Json(body)).into_response();
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
