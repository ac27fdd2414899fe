//! `ADD <url>`: one HTTP(S) GET with the registry client's HTTP stack
//! (ureq, rustls with the system roots and certs.d), the body streamed to a
//! file in the step's scratch directory, never more than a bound.
//!
//! As BuildKit: the file is named after the URL path's last element
//! (`__unnamed__` if it has none), its mtime is the answer's
//! `Last-Modified` (else the time of the fetch), and its mode is 0600 unless
//! `--chmod`. The body is not extracted even when it is a tar.
//!
//! A URL fetched before is revalidated, as BuildKit does: the answer's
//! `ETag` and `Last-Modified` are kept with what the body was
//! ([`Known`], in `<root>/build/urls/`), and the next build sends them as
//! `If-None-Match` and `If-Modified-Since`. A `304 Not Modified` reuses the
//! body's digest for the step's key without a download; only when that
//! step then misses the cache is the body fetched again, unconditionally.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::image::client::Settings;
use crate::image::digest::{sha256_of, Algorithm, HashingReader};
use crate::paths::Root;

/// The bound on a fetched body unless `STRATA_BUILD_ADD_MAX_BYTES` says
/// otherwise: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// A fetched URL, on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fetched {
    /// The file name the URL gives (BuildKit's rule).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Seconds since the epoch: `Last-Modified`, else now.
    pub mtime: i64,
    /// `sha256:<hex>` of the body.
    pub digest: String,
}

/// What an earlier fetch of a URL answered: its validators and what the body was.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Known {
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
    /// The body then.
    pub fetched: Fetched,
}

/// Where `url`'s [`Known`] is kept.
fn known_path(root: &Root, url: &str) -> PathBuf {
    root.build_url(&sha256_of(url.as_bytes()))
}

/// The validators kept for `url`, if any.
pub fn known(root: &Root, url: &str) -> Option<Known> {
    let bytes = std::fs::read(known_path(root, url)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Keeps `known` for `url` (losing it only costs a download).
fn remember(root: &Root, url: &str, known: &Known) {
    let bytes = serde_json::to_vec(known).expect("json");
    let _ = crate::fsutil::write_replace(&known_path(root, url), &bytes, false);
}

/// An answer's `ETag` and `Last-Modified`.
pub type Validators = (Option<String>, Option<String>);

/// How a fetch ended: a body in the file, or the server said the one
/// `known` describes has not changed (nothing written).
#[derive(Debug)]
pub enum Answer {
    /// A body, in the file, and the answer's validators.
    Body(Fetched, Validators),
    /// `304 Not Modified`: the body is the one known.
    NotModified(Fetched),
}

impl Answer {
    /// The body's description either way.
    pub fn fetched(&self) -> &Fetched {
        match self {
            Answer::Body(f, _) | Answer::NotModified(f) => f,
        }
    }
}

/// GETs `url` into `out`, revalidating what `root` knows of it when
/// `revalidate`; keeps the answer's validators for the next build.
pub fn fetch_known(
    root: &Root,
    url: &str,
    settings: &Settings,
    out: &Path,
    revalidate: bool,
) -> Result<Answer, String> {
    let known = revalidate.then(|| known(root, url)).flatten();
    let answer = fetch(url, settings, out, max_bytes(), known.as_ref())?;
    if let Answer::Body(f, (etag, last_modified)) = &answer {
        if etag.is_some() || last_modified.is_some() {
            let known = Known {
                etag: etag.clone(),
                last_modified: last_modified.clone(),
                fetched: f.clone(),
            };
            remember(root, url, &known);
        }
    }
    Ok(answer)
}

/// The bound on a body: `STRATA_BUILD_ADD_MAX_BYTES`, else
/// [`DEFAULT_MAX_BYTES`].
pub fn max_bytes() -> u64 {
    std::env::var("STRATA_BUILD_ADD_MAX_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// The file name BuildKit's Dockerfile frontend gives `url`.
pub fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_owned(),
        _ => "__unnamed__".to_owned(),
    }
}

/// GETs `url` into `out`, conditionally when `known`; the message says
/// what failed (the caller adds the Dockerfile's file and line).
pub fn fetch(
    url: &str,
    settings: &Settings,
    out: &Path,
    max: u64,
    known: Option<&Known>,
) -> Result<Answer, String> {
    let host = url
        .split_once("://")
        .map_or("", |(_, r)| r)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let tls = settings.tls_config(host).map_err(|e| e.to_string())?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(300))
        .tls_config(tls)
        .build();
    let mut request = agent.get(url);
    if let Some(k) = known {
        if let Some(e) = &k.etag {
            request = request.set("If-None-Match", e);
        }
        if let Some(m) = &k.last_modified {
            request = request.set("If-Modified-Since", m);
        }
    }
    let resp = match request.call() {
        Ok(r) if r.status() == 304 => match known {
            Some(k) => return Ok(Answer::NotModified(k.fetched.clone())),
            None => {
                return Err(format!(
                    "failed to fetch: 304 Not Modified to a plain GET {url}"
                ))
            }
        },
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            return Err(format!(
                "failed to fetch: {code} {} (GET {url})",
                r.status_text()
            ))
        }
        Err(ureq::Error::Transport(t)) => return Err(format!("failed to fetch {url}: {t}")),
    };
    if let Some(len) = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        if len > max {
            return Err(too_big(url, max));
        }
    }
    let mtime = resp
        .header("Last-Modified")
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(SystemTime::now)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validators = (
        resp.header("ETag").map(str::to_owned),
        resp.header("Last-Modified").map(str::to_owned),
    );
    let mut body = resp.into_reader().take(max + 1);
    let mut file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (size, digest) = copy_hashed(&mut body, &mut file)
        .map_err(|e| format!("failed to fetch {url}: reading the body: {e}"))?;
    if size > max {
        return Err(too_big(url, max));
    }
    Ok(Answer::Body(
        Fetched {
            name: file_name(url),
            size,
            mtime,
            digest,
        },
        validators,
    ))
}

fn too_big(url: &str, max: u64) -> String {
    format!("{url}: larger than the limit of {max} bytes (STRATA_BUILD_ADD_MAX_BYTES)")
}

/// Copies `r` to `w`; returns the byte count and `sha256:<hex>`.
fn copy_hashed(r: &mut impl Read, w: &mut File) -> io::Result<(u64, String)> {
    let mut h = HashingReader::new(r, Algorithm::Sha256);
    io::copy(&mut h, w)?;
    let (digest, n) = h.finish()?;
    Ok((n, digest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_buildkit() {
        assert_eq!(file_name("http://h/a/b.tar.gz?x=1#f"), "b.tar.gz");
        assert_eq!(file_name("https://h:8080/dir/"), "dir");
        assert_eq!(file_name("http://h"), "__unnamed__");
        assert_eq!(file_name("http://h/"), "__unnamed__");
    }
}
