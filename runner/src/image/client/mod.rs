//! A small synchronous OCI distribution client: manifests and blobs over
//! HTTP(S), Basic and Bearer-token auth, and resumable blob downloads.
//!
//! ```text
//! mod.rs     -> tls, errors, challenge   Client: requests, manifests, blobs
//! push       -> errors                   blob HEAD, mounts, uploads, manifest PUT
//! challenge  -> errors                   401 challenges: Basic, Bearer tokens
//! tls        -> errors                   scheme per host, trusted CAs (certs.d)
//! errors                                 Error, registry/transport answers sorted
//! ```

mod challenge;
mod errors;
mod push;
mod tls;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::image::auth::Credentials;
use crate::image::digest::{self, Digest};
use crate::image::reference::Reference;

pub use errors::{Error, OciError, Result};
pub use tls::{is_loopback, Settings, DEFAULT_CERTS_DIRS};

use errors::Failure;

/// A registry session for one repository.
pub struct Client {
    agent: ureq::Agent,
    settings: Settings,
    /// `scheme://api-host`, once a scheme has answered.
    base: Mutex<Option<String>>,
    /// The host the API is reached at (Docker Hub's differs from its name).
    host: String,
    /// The registry as the user named it, for messages.
    registry: String,
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

/// The first 64 KiB of an error answer: all that is ever shown of it.
fn read_error_body(resp: ureq::Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut bytes);
    bytes
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

impl Client {
    /// A client for the repository of `reference`.
    pub fn new(
        reference: &Reference,
        settings: &Settings,
        credentials: Option<Credentials>,
    ) -> Result<Client> {
        let host = reference.api_host().to_owned();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .tls_config(settings.tls_config(&reference.registry)?)
            .build();
        Ok(Client {
            agent,
            settings: settings.clone(),
            base: Mutex::new(None),
            host,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: Mutex::new(None),
        })
    }

    /// `scheme://host`: the first scheme of [`Settings::schemes`] that
    /// answers `GET /v2/` in HTTP (any status), asked once.
    fn base(&self) -> Result<String> {
        let mut base = self.base.lock().expect("base lock");
        if let Some(b) = base.as_ref() {
            return Ok(b.clone());
        }
        let schemes = self.settings.schemes(&self.registry);
        let mut last = None;
        for scheme in schemes {
            let candidate = format!("{scheme}://{}", self.host);
            if schemes.len() == 1 {
                *base = Some(candidate.clone());
                return Ok(candidate);
            }
            let url = format!("{candidate}/v2/");
            match self.agent.get(&url).call() {
                Ok(_) | Err(ureq::Error::Status(..)) => {
                    *base = Some(candidate.clone());
                    return Ok(candidate);
                }
                Err(ureq::Error::Transport(t)) => {
                    let e = self.transport_error(&url, &t);
                    // An untrusted certificate is an answer: the registry speaks HTTPS.
                    if matches!(e, Error::Untrusted { .. }) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one scheme"))
    }

    fn url(&self, path: &str) -> Result<String> {
        Ok(format!("{}{path}", self.base()?))
    }

    fn transport_error(&self, url: &str, t: &ureq::Transport) -> Error {
        let url = url.to_owned();
        let host = self.registry.clone();
        match errors::classify(t) {
            Failure::Connect(reason) => Error::Unreachable { url, reason },
            Failure::Certificate(reason) => Error::Untrusted {
                url,
                reason,
                ca_path: self.settings.ca_path_hint(&self.registry),
            },
            Failure::NotTls => Error::NotHttps { url, host },
            Failure::NotHttp => Error::NotPlainHttp { url, host },
            Failure::Other(message) => Error::Transport { url, message },
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
                ureq::Error::Status(401, _) => Err(self.credentials_error()),
                ureq::Error::Status(status, resp) => {
                    let oci = OciError::parse(&read_error_body(resp));
                    if status == 403 || oci.code == "DENIED" {
                        return Err(Error::Denied {
                            host: self.registry.clone(),
                            repository: self.repository.clone(),
                            message: oci.summary(),
                        });
                    }
                    if status == 400 && url.starts_with("http:") && oci.message.contains("HTTPS") {
                        return Err(Error::NotPlainHttp {
                            url: url.to_owned(),
                            host: self.registry.clone(),
                        });
                    }
                    if oci.code == "NAME_UNKNOWN" {
                        return Err(Error::NameUnknown {
                            repository: format!("{}/{}", self.registry, self.repository),
                        });
                    }
                    Err(Error::Status {
                        url: url.to_owned(),
                        status,
                        message: oci.summary(),
                    })
                }
                ureq::Error::Transport(t) => Err(self.transport_error(url, &t)),
            },
        }
    }

    /// Checks that the registry accepts our credentials (`GET /v2/`).
    pub fn check_login(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        match self.get(&url, &[]) {
            Ok(_) => Ok(()),
            Err(Error::CredentialsNeeded { host } | Error::CredentialsRefused { host, .. }) => {
                Err(Error::LoginFailed { host })
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches a manifest or index by tag or digest, and verifies a pinned digest.
    pub fn get_manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repository))?;
        let accept = [
            crate::image::oci::OCI_INDEX,
            crate::image::oci::OCI_MANIFEST,
            crate::image::oci::DOCKER_LIST,
            crate::image::oci::DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = match self.get(&url, &[("Accept", &accept)]) {
            Err(Error::Status { status: 404, .. }) => {
                let pinned = reference.parse::<Digest>().is_ok();
                let sep = if pinned { "@" } else { ":" };
                return Err(Error::ManifestUnknown {
                    image: format!("{}/{}{sep}{reference}", self.registry, self.repository),
                    what: if pinned {
                        "no such manifest"
                    } else {
                        "no such tag"
                    },
                });
            }
            other => other?,
        };
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
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repository))?;
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
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repository))?;
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
