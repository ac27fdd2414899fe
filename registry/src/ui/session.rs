//! Login sessions and CSRF tokens.
//!
//! A login makes a session: 32 random bytes (hex) in the `strata_session`
//! cookie (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure` over HTTPS),
//! held in this process's memory for [`SESSION_TTL`] at most; logging out
//! or restarting the registry ends it. Each session has its own CSRF
//! token, which every form that changes something must send back. Viewers
//! without a session get the token in a `strata_csrf` cookie (`SameSite=Strict`,
//! so another site's form never carries it) and must send it back too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "strata_session";
/// The anonymous CSRF cookie's name.
pub const CSRF_COOKIE: &str = "strata_csrf";

/// One signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie value.
    pub id: String,
    /// Who.
    pub user: String,
    /// The token forms must send back.
    pub csrf: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    hex::encode(crate::auth::rand_bytes())
}

impl Sessions {
    /// Start a session for `user`.
    pub fn create(&self, user: &str) -> Session {
        let session = Session {
            id: random_token(),
            user: user.to_owned(),
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(session.id.clone(), session.clone());
        session
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// End a session.
    pub fn remove(&self, id: &str) {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `name=value` for `/ui`, `HttpOnly` unless the
/// page's script must read it, `max_age` seconds (0 clears it).
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool, http_only: bool) -> String {
    let mut c = format!("{name}={value}; Path=/ui; SameSite=Strict; Max-Age={max_age}");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_and_removable() {
        let s = Sessions::default();
        let a = s.create("alice");
        let b = s.create("alice");
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, a.id);
        assert_eq!(s.get(&a.id).unwrap().user, "alice");
        s.remove(&a.id);
        assert!(s.get(&a.id).is_none());
        assert!(s.get("nope").is_none());
    }

    #[test]
    fn cookies_are_found_and_flagged() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "x=1; strata_session=abc".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, CSRF_COOKIE), None);
        let c = set_cookie(SESSION_COOKIE, "v", 10, true, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("a", "ab"));
    }
}
