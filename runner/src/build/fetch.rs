//! `ADD <url>`: one HTTP(S) GET with the registry client's HTTP stack
//! (ureq, rustls with the system roots and certs.d), the body streamed to a
//! file in the step's scratch directory, never more than a bound.
//!
//! As BuildKit: the file is named after the URL path's last element
//! (`__unnamed__` if it has none), its mtime is the answer's
//! `Last-Modified` (else the time of the fetch), and its mode is 0600 unless
//! `--chmod`. The body is not extracted even when it is a tar.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::image::client::Settings;
use crate::image::digest::{Algorithm, HashingReader};

/// The bound on a fetched body unless `STRATA_BUILD_ADD_MAX_BYTES` says
/// otherwise: 2 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// A fetched URL, on disk.
#[derive(Debug)]
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

/// GETs `url` into `out`; the message says what failed (the caller adds
/// the Dockerfile's file and line).
pub fn fetch(url: &str, settings: &Settings, out: &Path, max: u64) -> Result<Fetched, String> {
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
    let resp = match agent.get(url).call() {
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
    let mut body = resp.into_reader().take(max + 1);
    let mut file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (size, digest) = copy_hashed(&mut body, &mut file)
        .map_err(|e| format!("failed to fetch {url}: reading the body: {e}"))?;
    if size > max {
        return Err(too_big(url, max));
    }
    Ok(Fetched {
        name: file_name(url),
        size,
        mtime,
        digest,
    })
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
