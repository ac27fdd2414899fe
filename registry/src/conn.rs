//! Connection caps: how many sockets the server holds at once, in all and per
//! client address, applied where connections are accepted.
//!
//! Past a cap a connection costs almost nothing: the server reads nothing of
//! it, writes a fixed `503` with `Retry-After` (plain HTTP only; a TLS
//! listener just closes) and closes it. A small reserved slice of extra
//! connections answers `/livez` directly, so a load balancer's probe is
//! answered even while the caps are full; any other request on that slice
//! gets the same 503. Held connections are still bounded in time by the
//! header-read and body-idle timeouts, so slow clients (slowloris) cycle
//! through at most their share of the cap.
//!
//! On a TLS listener a connection whose first byte is not a TLS handshake
//! gets a plain-HTTP `400` saying the port speaks HTTPS, then is closed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sent, without reading the request, to a connection past a cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: application/json\r\nContent-Length: 95\r\nConnection: close\r\n\r\n\
{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many connections; retry later\",\"detail\":null}]}";
/// The answer to `/livez` on a reserved connection.
const LIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
Connection: close\r\n\r\nok\n";
/// How long a reserved connection may take to send its request line.
const RESERVED_READ: Duration = Duration::from_secs(1);
/// Refused connections drained at once (reading what they sent before
/// closing lets them see the 503 rather than a reset); past this they are
/// closed at once.
const DRAINING: usize = 256;

/// The caps, shared by every accepted connection.
pub struct ConnLimits {
    total: Arc<Semaphore>,
    per_client: usize,
    clients: Mutex<HashMap<IpAddr, usize>>,
    reserved: Arc<Semaphore>,
    draining: Arc<Semaphore>,
}

impl ConnLimits {
    /// At most `total` connections, `per_client` from one address, plus
    /// `reserved` that may only ask for `/livez`.
    pub fn new(total: usize, per_client: usize, reserved: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_client: per_client.max(1),
            clients: Mutex::new(HashMap::new()),
            reserved: Arc::new(Semaphore::new(reserved)),
            draining: Arc::new(Semaphore::new(DRAINING)),
        })
    }

    /// Take a place for a connection from `ip`, if both caps allow it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let mut clients = self.clients.lock().expect("connection counts poisoned");
        let held = clients.entry(ip).or_insert(0);
        if *held >= self.per_client {
            return None;
        }
        *held += 1;
        Some(ConnPermit {
            limits: self.clone(),
            ip,
            _total: total,
        })
    }

    /// Connections held now by `ip`.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        let clients = self.clients.lock().expect("connection counts poisoned");
        clients.get(&ip).copied().unwrap_or(0)
    }
}

/// A connection's place under the caps, given back when it closes.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut clients = self
            .limits
            .clients
            .lock()
            .expect("connection counts poisoned");
        if let Some(held) = clients.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

/// An accepted connection holding its place under the caps.
pub struct Capped {
    stream: TcpStream,
    _permit: ConnPermit,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The acceptor applying [`ConnLimits`] (and `TCP_NODELAY`: a response's
/// header and body writes must not wait for a delayed ACK).
#[derive(Clone)]
pub struct CapAcceptor {
    limits: Arc<ConnLimits>,
    /// Whether refused connections get a plain-HTTP answer (not on TLS).
    plain: bool,
}

impl CapAcceptor {
    /// An acceptor over `limits`; `plain` for a plain-HTTP listener.
    pub fn new(limits: Arc<ConnLimits>, plain: bool) -> CapAcceptor {
        CapAcceptor { limits, plain }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for CapAcceptor {
    type Stream = Capped;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Capped, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let limits = self.limits.clone();
        let plain = self.plain;
        Box::pin(async move {
            stream.set_nodelay(true)?;
            let ip = stream.peer_addr()?.ip();
            if let Some(permit) = limits.admit(ip) {
                if !plain {
                    match first_byte(&stream).await {
                        FirstByte::Tls => {}
                        FirstByte::Other => {
                            refuse_plain_http(stream).await;
                            return Err(io::Error::other("plain HTTP on the TLS port"));
                        }
                        // Closed at once: the handshake timeout must not add
                        // a second wait to the slot it holds.
                        FirstByte::Nothing => {
                            return Err(io::Error::other("nothing sent to the TLS port"))
                        }
                    }
                }
                return Ok((
                    Capped {
                        stream,
                        _permit: permit,
                    },
                    service,
                ));
            }
            if plain {
                refuse(&limits, stream).await;
            }
            Err(io::Error::other("connection cap reached"))
        })
    }
}

/// Answer a connection past the caps: `/livez` on the reserved slice, a
/// fixed 503 otherwise; then close.
async fn refuse(limits: &ConnLimits, mut stream: TcpStream) {
    if let Ok(_reserved) = limits.reserved.clone().try_acquire_owned() {
        let mut head = [0u8; 1024];
        let read = tokio::time::timeout(RESERVED_READ, read_head(&mut stream, &mut head)).await;
        let live = matches!(read, Ok(Ok(n)) if is_livez(&head[..n]));
        let _ =
            tokio::io::AsyncWriteExt::write_all(&mut stream, if live { LIVE } else { BUSY }).await;
        return;
    }
    let _ = stream.try_write(BUSY);
    // Closing a socket with unread data resets it, and the client may lose
    // the 503: read what it sent for a moment, a bounded number at a time.
    if let Ok(drain) = limits.draining.clone().try_acquire_owned() {
        tokio::spawn(async move {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            drop(drain);
        });
    }
}

/// How long a new connection to the TLS port may take to send its first byte.
const FIRST_BYTE: Duration = Duration::from_secs(10);

/// What a new connection to the TLS port sent first.
enum FirstByte {
    /// A TLS handshake record (0x16).
    Tls,
    /// Anything else: plain HTTP, most likely.
    Other,
    /// Nothing within [`FIRST_BYTE`], or the connection closed.
    Nothing,
}

async fn first_byte(stream: &TcpStream) -> FirstByte {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0x16 => FirstByte::Tls,
        Ok(Ok(1)) => FirstByte::Other,
        _ => FirstByte::Nothing,
    }
}

/// Answer plain HTTP on the TLS port with a plain `400` saying so, then close.
async fn refuse_plain_http(mut stream: TcpStream) {
    let mut head = [0u8; 4096];
    let n = tokio::time::timeout(RESERVED_READ, read_head(&mut stream, &mut head))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let answer = plain_http_answer(&head[..n], &local);
    let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes()).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

/// The `400` for plain HTTP on the TLS port, naming the URL to use: the
/// request's `Host` when it looks like a host name, else the local address.
fn plain_http_answer(head: &[u8], local: &str) -> String {
    let host = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or_else(|| local.to_owned());
    let message = format!("this port speaks HTTPS: use https://{host}");
    let body = serde_json::json!({"errors": [{"code": "UNSUPPORTED", "message": message, "detail": null}]})
        .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Read until the end of the request head, the buffer is full, or EOF.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = stream.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(n)
}

/// Whether a request head asks for `/livez`.
fn is_livez(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(b"GET /livez") else {
        return false;
    };
    matches!(rest.first(), Some(b' ' | b'?'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_client_and_gives_places_back() {
        let limits = ConnLimits::new(3, 2, 0);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per client");
        let _b1 = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "in all");
        drop(a1);
        assert_eq!(limits.held_by(a), 1);
        assert!(
            limits.admit(b).is_some(),
            "a closed connection's place is free"
        );
    }

    #[test]
    fn only_a_livez_request_line_is_live() {
        assert!(is_livez(b"GET /livez HTTP/1.1\r\n"));
        assert!(is_livez(b"GET /livez?x HTTP/1.1\r\n"));
        assert!(!is_livez(b"GET /livezz HTTP/1.1\r\n"));
        assert!(!is_livez(b"GET /v2/ HTTP/1.1\r\n"));
        assert!(!is_livez(b"POST /livez HTTP/1.1\r\n"));
    }

    #[test]
    fn plain_http_on_the_tls_port_is_told_the_https_url() {
        let answer = plain_http_answer(
            b"GET /v2/ HTTP/1.1\r\nhost: reg.example:5000\r\n\r\n",
            "127.0.0.1:5000",
        );
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("this port speaks HTTPS: use https://reg.example:5000"));
        let odd = plain_http_answer(b"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", "127.0.0.1:5000");
        assert!(odd.contains("use https://127.0.0.1:5000\""), "{odd}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn the_busy_answer_declares_its_length() {
        let (head, body) = std::str::from_utf8(BUSY)
            .unwrap()
            .split_once("\r\n\r\n")
            .unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    }
}
