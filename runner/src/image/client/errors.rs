//! The client's errors, and the turning of what a registry or the network
//! answered into them: one line each, saying what to do, the URL once and
//! never a raw JSON body.

use std::io;
use std::path::PathBuf;

use serde::Deserialize;

use crate::image::digest::{self, Digest};

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answered at the registry's address.
    #[error("cannot reach the registry at {url} ({reason}): is the registry running?")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// What the network said (connection refused, no such host...).
        reason: String,
    },
    /// Transport failure after connecting (reset, timeout...).
    #[error("{url}: {message}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry's TLS certificate is not trusted.
    #[error("{url}: the registry's certificate is not trusted ({reason}); put its CA certificate in {ca_path}")]
    Untrusted {
        /// The URL asked for.
        url: String,
        /// What rustls said.
        reason: String,
        /// Where a CA certificate for this registry is read from.
        ca_path: String,
    },
    /// HTTPS spoken to a registry that answered something else.
    #[error("{url}: the registry does not speak HTTPS; if it serves plain HTTP, pass --insecure-registry {host}")]
    NotHttps {
        /// The URL asked for.
        url: String,
        /// The registry host.
        host: String,
    },
    /// Plain HTTP spoken to a registry that speaks HTTPS.
    #[error("{url}: the registry speaks HTTPS, not plain HTTP; drop --insecure-registry {host}")]
    NotPlainHttp {
        /// The URL asked for.
        url: String,
        /// The registry host.
        host: String,
    },
    /// No manifest for this tag or digest.
    #[error("manifest unknown: {image} ({what})")]
    ManifestUnknown {
        /// The image, as `registry/repository:tag` or `@digest`.
        image: String,
        /// "no such tag" or "no such manifest".
        what: &'static str,
    },
    /// The repository does not exist.
    #[error("repository unknown: {repository} (no such repository)")]
    NameUnknown {
        /// `registry/repository`.
        repository: String,
    },
    /// The registry wants credentials and has none from us.
    #[error("{host} needs credentials: run `runner login {host}`")]
    CredentialsNeeded {
        /// The registry host.
        host: String,
    },
    /// The registry refused the stored credentials.
    #[error("{host} refused the credentials of user {username}: run `runner login {host}` again")]
    CredentialsRefused {
        /// The registry host.
        host: String,
        /// The user whose password was refused.
        username: String,
    },
    /// `runner login` with a wrong user name or password.
    #[error("login failed for {host}: invalid username or password")]
    LoginFailed {
        /// The registry host.
        host: String,
    },
    /// Authenticated, but not allowed.
    #[error("{host} denied access to {repository}: {message}")]
    Denied {
        /// The registry host.
        host: String,
        /// The repository.
        repository: String,
        /// The registry's message.
        message: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: registry answered {status}: {message}")]
    Status {
        /// The URL asked for.
        url: String,
        /// HTTP status.
        status: u16,
        /// The registry's error code and message, or the start of its body.
        message: String,
    },
    /// A token could not be had for other reasons than credentials.
    #[error("authentication to {host} failed: {message}")]
    Auth {
        /// The registry host.
        host: String,
        /// Why.
        message: String,
    },
    /// A TLS client could not be set up (an unreadable CA file...).
    #[error("TLS set-up for {host}: {message}")]
    TlsSetup {
        /// The registry host.
        host: String,
        /// Why.
        message: String,
    },
    /// A downloaded blob did not match its digest or size.
    #[error("blob {expected} from {url} hashed to {actual} ({size} bytes)")]
    DigestMismatch {
        /// The URL.
        url: String,
        /// Expected digest.
        expected: Digest,
        /// Actual digest.
        actual: Digest,
        /// Bytes received.
        size: u64,
    },
    /// Local file I/O failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// A digest header or document was malformed.
    #[error(transparent)]
    Digest(#[from] digest::Error),
}

/// Result alias for the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The first entry of an OCI error body (`{"errors":[{"code","message"}]}`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OciError {
    /// e.g. `MANIFEST_UNKNOWN`; empty when the body was not an OCI error.
    pub code: String,
    /// The registry's message, or the start of a non-JSON body on one line.
    pub message: String,
}

/// At most this much of what a registry says is shown to the user.
const MAX_SHOWN: usize = 200;

/// What a (possibly hostile) registry said, made safe to print: one line,
/// no control characters (no terminal escapes), at most [`MAX_SHOWN`] chars.
fn one_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut line = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = line.char_indices().nth(MAX_SHOWN) {
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

impl OciError {
    /// Reads an error body.
    pub fn parse(body: &[u8]) -> OciError {
        #[derive(Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) if !b.errors.is_empty() => {
                let e = b.errors.into_iter().next().expect("not empty");
                OciError {
                    code: one_line(&e.code),
                    message: one_line(&e.message),
                }
            }
            _ => OciError {
                code: String::new(),
                message: one_line(&String::from_utf8_lossy(&body[..body.len().min(MAX_SHOWN)])),
            },
        }
    }

    /// `CODE: message`, or what there is of it.
    pub fn summary(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.code, self.message),
            (false, true) => self.code.clone(),
            (true, _) => self.message.clone(),
        }
    }
}

/// How a request failed below HTTP.
pub enum Failure {
    /// Could not connect at all.
    Connect(String),
    /// The TLS peer's certificate was refused.
    Certificate(String),
    /// A TLS handshake met something that is not TLS.
    NotTls,
    /// A plain-HTTP request met something that is not HTTP.
    NotHttp,
    /// Anything else.
    Other(String),
}

/// Sorts a ureq transport error into a [`Failure`].
pub fn classify(t: &ureq::Transport) -> Failure {
    use std::error::Error as _;
    let mut source = t.source();
    while let Some(e) = source {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match tls {
            Some(rustls::Error::InvalidCertificate(c)) => {
                return Failure::Certificate(format!("{c:?}"));
            }
            Some(rustls::Error::InvalidMessage(_))
            | Some(rustls::Error::InappropriateMessage { .. }) => {
                return Failure::NotTls;
            }
            Some(other) => return Failure::Other(other.to_string()),
            None => {}
        }
        // ureq's parser refusing the answer's status line or headers (a TLS
        // alert, say) is an io error of one of these kinds.
        let garbled = e.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            )
        });
        if garbled && t.url().is_some_and(|u| u.scheme() == "http") {
            return Failure::NotHttp;
        }
        source = e.source();
    }
    match t.kind() {
        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => Failure::Connect(reason(t)),
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => Failure::NotHttp,
        _ => Failure::Other(reason(t)),
    }
}

/// What went wrong, without the URL (the caller names it once).
fn reason(t: &ureq::Transport) -> String {
    use std::error::Error as _;
    let mut innermost = t.message().map(str::to_owned);
    let mut source = t.source();
    while let Some(e) = source {
        innermost = Some(match e.downcast_ref::<io::Error>() {
            Some(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                "connection refused".into()
            }
            _ => e.to_string(),
        });
        source = e.source();
    }
    innermost.unwrap_or_else(|| t.kind().to_string())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_registrys_message_is_printed_as_one_short_line_without_escapes() {
        let body = format!(
            r#"{{"errors":[{{"code":"DENIED\u001b[2J","message":"line one\nline two \u001b]0;pwned\u0007{}"}}]}}"#,
            "x".repeat(500)
        );
        let e = OciError::parse(body.as_bytes());
        assert!(
            !e.summary().chars().any(char::is_control),
            "{:?}",
            e.summary()
        );
        assert!(e.message.starts_with("line one line two"));
        assert!(e.message.chars().count() <= MAX_SHOWN + 3);
        assert_eq!(e.code, "DENIED [2J");
    }

    use super::*;

    #[test]
    fn oci_error_bodies_become_one_line() {
        let e = OciError::parse(
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{}}]}"#,
        );
        assert_eq!(e.code, "NAME_UNKNOWN");
        assert_eq!(
            e.summary(),
            "NAME_UNKNOWN: repository name not known to registry"
        );
        let html = OciError::parse(b"<html>\n  <body>bad gateway</body>\n</html>\n");
        assert_eq!(html.code, "");
        assert_eq!(html.summary(), "<html> <body>bad gateway</body> </html>");
    }
}
