//! The failed-login limiter: token buckets per user name and per client
//! address. A login is checked here before any bcrypt work, and only a
//! failure takes a token, so guessing is slowed while a user who knows the
//! password (or holds a cached success) is not.

use std::net::IpAddr;

use crate::config::AuthConfig;
use crate::limits::RateLimiter;

/// Failed logins by user name and by client address.
pub(super) struct FailedLogins {
    users: RateLimiter<String>,
    addrs: RateLimiter<IpAddr>,
}

impl FailedLogins {
    /// Buckets of `failed_login_burst`, refilled at `failed_logins_per_minute`.
    pub(super) fn new(config: &AuthConfig) -> FailedLogins {
        FailedLogins {
            users: bucket(config),
            addrs: bucket(config),
        }
    }

    /// Whether `user` (and `peer`) may try a login; on refusal, the seconds
    /// until they may. Takes nothing.
    pub(super) fn check(&self, user: &str, peer: Option<IpAddr>) -> Result<(), u64> {
        self.users.peek(user.to_owned())?;
        if let Some(ip) = peer {
            self.addrs.peek(ip)?;
        }
        Ok(())
    }

    /// Count a failed login against `user` and `peer`.
    pub(super) fn record(&self, user: &str, peer: Option<IpAddr>) {
        let _ = self.users.check(user.to_owned());
        if let Some(ip) = peer {
            let _ = self.addrs.check(ip);
        }
    }
}

fn bucket<K: std::hash::Hash + Eq + Clone>(config: &AuthConfig) -> RateLimiter<K> {
    RateLimiter::new(
        config.failed_logins_per_minute.max(0.001) / 60.0,
        f64::from(config.failed_login_burst.max(1)),
    )
}
