//! What can go wrong asking an upstream, and which of it lets a cached copy
//! be served stale ([`UpstreamError::is_unavailable`]). The texts name the
//! status or the failure, never a URL's credentials, a token or an upstream
//! body.

/// An upstream request's failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The upstream cannot be reached, timed out, is overloaded (429) or failing (5xx).
    #[error("upstream unavailable: {reason}")]
    Unavailable {
        /// Why, in a few words.
        reason: String,
    },
    /// The upstream does not have it (404).
    #[error("not found upstream")]
    NotFound,
    /// The upstream refused our credentials (401/403).
    #[error("the upstream refused access (HTTP {status})")]
    Denied {
        /// The status it answered.
        status: u16,
    },
    /// The upstream answered something that is not what it should be.
    #[error("the upstream's answer is invalid: {what}")]
    Invalid {
        /// What was wrong.
        what: String,
    },
    /// A body over the bound.
    #[error("the upstream's answer is over {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
}

/// `Result` of upstream requests.
pub type UpstreamResult<T> = Result<T, UpstreamError>;

impl UpstreamError {
    /// From a non-2xx status.
    pub fn from_status(status: reqwest::StatusCode) -> UpstreamError {
        match status.as_u16() {
            404 => UpstreamError::NotFound,
            401 | 403 => UpstreamError::Denied {
                status: status.as_u16(),
            },
            429 => UpstreamError::Unavailable {
                reason: "429 too many requests".into(),
            },
            s if s >= 500 => UpstreamError::Unavailable {
                reason: format!("HTTP {s}"),
            },
            s => UpstreamError::Invalid {
                what: format!("unexpected HTTP {s}"),
            },
        }
    }

    /// From a transport failure (connect, timeout, reset): unavailable,
    /// described without the URL (which the configuration owns).
    pub fn from_reqwest(e: reqwest::Error) -> UpstreamError {
        let reason = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else if e.is_body() || e.is_decode() {
            "the connection broke while reading"
        } else {
            "request failed"
        };
        UpstreamError::Unavailable {
            reason: reason.into(),
        }
    }

    /// Whether a cached copy may be served instead (stale).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, UpstreamError::Unavailable { .. })
    }
}
