//! Reading a request: the query string, headers, and bodies (streamed with
//! an idle timeout, or read whole up to a limit).

use axum::body::{Body, BodyDataStream};
use axum::http::{header, HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{body_error, ApiError, Code};

/// Query parameters in order, repeated keys kept.
pub(super) struct Query(pub(super) Vec<(String, String)>);

impl Query {
    /// The parameters of a request's URI.
    pub(super) fn parse(uri: &axum::http::Uri) -> Result<Query, ApiError> {
        Query::decode(uri.query().unwrap_or(""))
    }

    /// `application/x-www-form-urlencoded` pairs (a query string or a form body).
    pub(super) fn decode(raw: &str) -> Result<Query, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
            &format!("/?{raw}").parse().map_err(|_| bad_query())?,
        )
        .map(|q| Query(q.0))
        .map_err(|_| bad_query())
    }

    /// The first value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(super) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// 400 for a query string (or form) that does not decode.
pub(super) fn bad_query() -> ApiError {
    ApiError::new(Code::Unsupported)
        .status(StatusCode::BAD_REQUEST)
        .detail("malformed query string")
}

/// The client's address, when the server recorded it.
pub fn peer_ip(parts: &axum::http::request::Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// A header's value, when it is visible text.
pub(super) fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The declared `Content-Length`.
pub(super) fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match header_str(h, header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(Code::SizeInvalid).detail("invalid Content-Length")),
    }
}

/// Whether a request carries a body: a non-zero length, or chunked encoding.
pub(super) fn has_body(h: &HeaderMap) -> Result<bool, ApiError> {
    Ok(match content_length(h)? {
        Some(n) => n > 0,
        None => h.contains_key(header::TRANSFER_ENCODING),
    })
}

/// Fail the body with `TimedOut` when the client sends nothing for `idle`, so
/// a stalled upload releases its task and connection (answered with 408).
pub(super) fn idle_timeout(body: Body, idle: std::time::Duration) -> Body {
    let frames = futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(frame)) => Some((frame.map_err(std::io::Error::other), Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no body data for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    });
    Body::from_stream(frames)
}

/// The body as a stream of byte chunks, for the store.
pub(super) fn body_stream(body: Body) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    body.into_data_stream().map_err(std::io::Error::other)
}

/// Past a refused body's limit, how much more is read and dropped so the
/// client reads our error instead of a connection reset.
pub(super) const DRAIN: usize = 16 * 1024 * 1024;

/// Read and drop what a refused request left of its body, up to [`DRAIN`]
/// bytes, so the client can finish sending and read our error instead of a
/// connection reset (an out-of-order chunk is refused before it is read).
pub(super) async fn drain(mut stream: BodyDataStream) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN {
            break;
        }
    }
}

/// Read a whole body of at most `limit` bytes.
pub(super) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let e = std::io::Error::other(e);
            body_error(Code::ManifestInvalid, &e).detail(format!("request body: {e}"))
        })?;
        seen += chunk.len();
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN {
            break;
        }
    }
    if seen > limit {
        return Err(store::Error::ManifestTooLarge { size: seen, limit }.into());
    }
    Ok(buf.freeze())
}
