//! The htpasswd users and Basic logins: the file's bcrypt entries, the same
//! bcrypt work for an unknown user as for a wrong password, and a short
//! cache of successful logins (failures are never cached; they count
//! against [`super::limiter`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest as _, Sha256};

use super::Auth;
use crate::config::AuthConfig;
use crate::startup::{Error, Result};

/// How long a successful Basic login is remembered.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);

/// Parse an htpasswd file: `user:bcrypt-hash` lines.
pub fn parse_htpasswd(text: &str) -> Result<HashMap<String, String>> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or(Error::HtpasswdSyntax { line: i + 1 })?;
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            return Err(Error::HtpasswdNotBcrypt { line: i + 1 });
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

/// The users of the configured htpasswd file (none without one).
pub(super) fn load(config: &AuthConfig) -> Result<HashMap<String, String>> {
    match &config.htpasswd {
        Some(path) => parse_htpasswd(&std::fs::read_to_string(path).map_err(|source| {
            Error::HtpasswdRead {
                path: path.clone(),
                source,
            }
        })?),
        None => Ok(HashMap::new()),
    }
}

/// A hash checked for unknown users, at the cost of the file's own hashes.
pub(super) fn dummy_hash(users: &HashMap<String, String>) -> Result<String> {
    let cost = users
        .values()
        .next()
        .and_then(|h| h.get(4..6))
        .and_then(|c| c.parse().ok())
        .unwrap_or(bcrypt::DEFAULT_COST);
    Ok(bcrypt::hash("not a password", cost)?)
}

/// `user:password` from a Basic credential's base64.
pub(super) fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

impl Auth {
    /// Check a user name and password (blocking: bcrypt is slow by design).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        self.login(user, password, None).unwrap_or(false)
    }

    /// Check a login from `peer` (blocking): a cached success first, then
    /// the failed-login limits, then bcrypt. `Err(seconds)` when the user or
    /// the address has failed too often; the password is not checked then.
    pub fn login(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<bool, u64> {
        let fingerprint: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        {
            let cache = self.verified.lock().expect("auth cache poisoned");
            if let Some((u, until)) = cache.get(&fingerprint) {
                if u == user && *until > Instant::now() {
                    return Ok(true);
                }
            }
        }
        self.failed.check(user, peer)?;
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy_hash.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut cache = self.verified.lock().expect("auth cache poisoned");
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            cache.insert(fingerprint, (user.to_owned(), now + BASIC_CACHE_TTL));
        } else {
            self.failed.record(user, peer);
        }
        Ok(ok)
    }
}
