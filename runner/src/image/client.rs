//! A small synchronous OCI distribution client: manifests and blobs over
//! HTTP(S), Basic and Bearer-token auth, and resumable blob downloads.
//!
//! Plain HTTP is used for loopback hosts (like Docker does) and for hosts
//! named with `--insecure-registry`; everything else is HTTPS.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::image::auth::Credentials;
use crate::image::digest::{self, Digest};
use crate::image::reference::Reference;

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transport failure (connection refused, TLS, reset...).
    #[error("{url}: {message}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{url}: registry answered {status}: {body}")]
    Status {
        /// The URL asked for.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Credentials were refused or a token could not be had.
    #[error("authentication to {host} failed: {message}")]
    Auth {
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

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a registry host gets plain HTTP: loopback hosts, or listed ones.
pub fn uses_plain_http(host: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|h| h == host) {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A registry session for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Mutex<Option<String>>,
}

/// A fetched manifest or index.
#[derive(Debug)]
pub struct FetchedManifest {
    /// Raw bytes, as digested.
    pub bytes: Vec<u8>,
    /// Content-Type reported by the registry.
    pub media_type: String,
    /// Digest of `bytes`.
    pub digest: Digest,
}

fn read_body(resp: ureq::Response, url: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    Ok(bytes)
}

fn challenge_params(header: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_owned(), n),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_owned(), n),
                None => (after.trim().to_owned(), ""),
            }
        };
        params.insert(key, value);
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Client {
    /// A client for the repository of `reference`.
    pub fn new(
        reference: &Reference,
        insecure: &[String],
        credentials: Option<Credentials>,
    ) -> Client {
        let host = reference.api_host().to_owned();
        let scheme = if uses_plain_http(&reference.registry, insecure) {
            "http"
        } else {
            "https"
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .build();
        Client {
            agent,
            base: format!("{scheme}://{host}"),
            host,
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        }
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// Answers a 401 challenge: returns the Authorization header value to retry with.
    fn authenticate(&self, challenge: &str) -> Result<String> {
        let (scheme, params) = challenge_params(challenge);
        let auth_err = |message: String| Error::Auth {
            host: self.host.clone(),
            message,
        };
        match scheme.as_str() {
            "basic" => self
                .basic()
                .ok_or_else(|| auth_err("registry wants credentials; run `runner login`".into())),
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| auth_err("Bearer challenge without realm".into()))?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(basic) = self.basic() {
                    req = req.set("Authorization", &basic);
                }
                let resp = req.call().map_err(|e| auth_err(e.to_string()))?;
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_body(resp, realm)?;
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| auth_err(e.to_string()))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| auth_err("token response without token".into()))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(auth_err(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Sends a GET, answering one auth challenge if needed.
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<ureq::Response> {
        let send = |auth: Option<&str>| -> Result<ureq::Response, Box<ureq::Error>> {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = auth {
                req = req.set("Authorization", a);
            }
            req.call().map_err(Box::new)
        };
        let current = self.authorization.lock().expect("auth lock").clone();
        let result = match send(current.as_deref()) {
            Err(e) => match *e {
                ureq::Error::Status(401, resp) => {
                    let challenge = resp.header("www-authenticate").unwrap_or("").to_owned();
                    let auth = self.authenticate(&challenge)?;
                    *self.authorization.lock().expect("auth lock") = Some(auth.clone());
                    send(Some(&auth))
                }
                other => Err(Box::new(other)),
            },
            ok => ok,
        };
        match result {
            Ok(resp) => Ok(resp),
            Err(e) => match *e {
                ureq::Error::Status(status, resp) => {
                    let body = read_body(resp, url).unwrap_or_default();
                    let body = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    Err(Error::Status {
                        url: url.to_owned(),
                        status,
                        body,
                    })
                }
                e => Err(Error::Transport {
                    url: url.to_owned(),
                    message: e.to_string(),
                }),
            },
        }
    }

    /// Checks that the registry accepts our credentials (`GET /v2/`).
    pub fn check_login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        self.get(&url, &[]).map(drop)
    }

    /// Fetches a manifest or index by tag or digest, and verifies a pinned digest.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base, self.repository, reference
        );
        let accept = [
            crate::image::oci::OCI_INDEX,
            crate::image::oci::OCI_MANIFEST,
            crate::image::oci::DOCKER_LIST,
            crate::image::oci::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self.get(&url, &[("Accept", &accept)])?;
        let media_type = resp
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let bytes = read_body(resp, &url)?;
        let digest = match reference.parse::<Digest>() {
            Ok(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        url,
                        expected,
                        actual,
                        size: bytes.len() as u64,
                    });
                }
                expected
            }
            Err(_) => digest::sha256_of(&bytes),
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches a small blob (a config) whole and verifies it.
    pub fn get_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, digest);
        let bytes = read_body(self.get(&url, &[])?, &url)?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                url,
                expected: digest.clone(),
                actual,
                size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Downloads a blob into `partial`, resuming from what is already there
    /// (HTTP Range), and verifies the whole file against `digest`.
    /// `on_bytes` sees every byte of the blob, in order: first what a resumed
    /// download already had, then the new bytes as they arrive.
    pub fn download_blob(
        &self,
        digest: &Digest,
        partial: &Path,
        on_bytes: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repository, digest);
        let io_err = |action| {
            move |source| Error::Io {
                action,
                path: partial.to_owned(),
                source,
            }
        };
        let have = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        let range = format!("bytes={have}-");
        let headers: Vec<(&str, &str)> = if have > 0 {
            vec![("Range", range.as_str())]
        } else {
            Vec::new()
        };
        let resp = match self.get(&url, &headers) {
            Err(Error::Status { status: 416, .. }) if have > 0 => {
                fs::remove_file(partial).map_err(io_err("remove"))?;
                self.get(&url, &[])?
            }
            other => other?,
        };
        let mut hasher = digest.algorithm().hasher();
        let mut size = 0;
        let mut buf = vec![0u8; 256 * 1024];
        let mut file = if resp.status() == 206 {
            let mut existing = File::open(partial).map_err(io_err("open"))?;
            loop {
                let n = match existing.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("read")(e)),
                };
                hasher.update(&buf[..n]);
                size += n as u64;
                on_bytes(&buf[..n]);
            }
            OpenOptions::new()
                .append(true)
                .open(partial)
                .map_err(io_err("open"))?
        } else {
            File::create(partial).map_err(io_err("create"))?
        };
        let mut reader = resp.into_reader();
        let mut written_back = size;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Transport {
                        url,
                        message: e.to_string(),
                    })
                }
            };
            file.write_all(&buf[..n]).map_err(io_err("write"))?;
            hasher.update(&buf[..n]);
            size += n as u64;
            on_bytes(&buf[..n]);
            if size - written_back >= WRITE_BEHIND {
                store::start_writeback(&file, written_back, size - written_back);
                written_back = size;
            }
        }
        file.sync_all().map_err(io_err("sync"))?;
        let actual = hasher.finish();
        if &actual != digest {
            fs::remove_file(partial).map_err(io_err("remove"))?;
            return Err(Error::DigestMismatch {
                url,
                expected: digest.clone(),
                actual,
                size,
            });
        }
        Ok(())
    }
}

/// Start write-back after this many downloaded bytes.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http() {
        assert!(uses_plain_http("localhost:5000", &[]));
        assert!(uses_plain_http("127.0.0.5:80", &[]));
        assert!(uses_plain_http("[::1]:5000", &[]));
        assert!(!uses_plain_http("registry.example.com", &[]));
        assert!(uses_plain_http(
            "reg.lan:5000",
            &["reg.lan:5000".to_owned()]
        ));
    }

    #[test]
    fn parses_bearer_challenge() {
        let (scheme, p) = challenge_params(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull");
    }

    /// A tiny registry that demands a Bearer token from its own token endpoint.
    fn token_registry() -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    head.push(line.trim().to_owned());
                }
                let request = head.join("\n");
                let (status, extra, body) = if request.starts_with("GET /token") {
                    (200, String::new(), r#"{"token":"T0K"}"#.to_owned())
                } else if request.contains("Bearer T0K") {
                    (200, String::new(), "{}".to_owned())
                } else {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"reg\",scope=\"repository:team/app:pull\"\r\n"
                    );
                    (401, challenge, "{}".to_owned())
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).unwrap();
                seen.push(request);
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn bearer_challenge_is_answered_with_a_token_from_the_realm() {
        let (addr, server) = token_registry();
        let reference: Reference = format!("{addr}/team/app").parse().unwrap();
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        Client::new(&reference, &[], Some(creds))
            .check_login()
            .unwrap();
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("GET /v2/ "), "{seen:?}");
        assert!(seen[1].starts_with("GET /token?"), "{seen:?}");
        assert!(
            seen[1].contains("scope=repository%3Ateam%2Fapp%3Apull"),
            "{seen:?}"
        );
        assert!(seen[1].contains("service=reg"), "{seen:?}");
        // Basic credentials go to the token endpoint: base64("u:p").
        assert!(seen[1].contains("Basic dTpw"), "{seen:?}");
        assert!(seen[2].contains("Bearer T0K"), "{seen:?}");
    }
}
