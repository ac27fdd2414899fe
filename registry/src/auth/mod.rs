//! Authentication and access control.
//!
//! Clients prove who they are with HTTP Basic (htpasswd, bcrypt) or with a
//! Bearer JWT from the `/token` endpoint (the Docker token flow). What they
//! may do comes from the rules in the config: per-repository `pull`, `push`
//! and `delete` for users, groups and anonymous clients, with glob patterns.
//! Rules are evaluated on every request, so a token never outlives a revoked
//! permission; a token only narrows what its holder may do.
//!
//! Secrets are never logged. A wrong user costs the same bcrypt work as a
//! wrong password. Failed logins are rate-limited per user name and per
//! client address (token buckets): past the limit a login is refused with
//! 429 before any bcrypt work, so guessing cannot burn the CPU. Successful
//! verifications are cached for a few minutes; failures never are.
//!
//! ```text
//! auth (Auth, Caller, Action, verify)
//!  ├── users    htpasswd file, Basic logins, the success cache
//!  ├── limiter  failed logins per user and per address
//!  ├── rules    the config's rules: what a caller may do on a repository
//!  ├── tokens   JWTs: issue with the granted scopes, sign, verify; challenges
//!  └── policy   one request: which (repository, action) it needs, mount
//!               sources, and the 401/403/429 answer (HTTP and store types)
//! ```
//! `users` uses `limiter`; `tokens` uses `rules` (a token grants no more
//! than the rules permit); `policy` uses the others through [`Auth`], and
//! none of them uses `policy`.

mod limiter;
pub mod policy;
mod rules;
#[cfg(test)]
mod tests;
mod tokens;
mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub use rules::glob_match;
pub use tokens::{rand_bytes, Grant};
pub use users::parse_htpasswd;

use crate::config::AuthConfig;
use limiter::FailedLogins;
use rules::CompiledRule;

/// Something a client may do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    /// The action's name in scopes and config.
    pub fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    /// Every action.
    pub const ALL: Actions = Actions(7);

    /// Parse names such as `pull`, `push`, `delete` or `*`; unknown names are ignored.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Actions {
        let mut bits = 0;
        for n in names {
            bits |= match n.trim() {
                "*" => 7,
                "pull" => 1,
                "push" => 2,
                "delete" => 4,
                _ => 0,
            };
        }
        Actions(bits)
    }

    /// Whether `a` is in the set.
    pub fn has(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    fn union(self, o: Actions) -> Actions {
        Actions(self.0 | o.0)
    }

    fn intersect(self, o: Actions) -> Actions {
        Actions(self.0 & o.0)
    }

    fn names(self) -> Vec<String> {
        Action::ALL
            .iter()
            .filter(|a| self.has(**a))
            .map(|a| a.name().to_owned())
            .collect()
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// An htpasswd user.
    User(String),
}

impl Caller {
    /// The user name, or "" for anonymous.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "",
            Caller::User(u) => u,
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials are missing, wrong, expired or too narrow: 401 with a challenge.
    Unauthenticated {
        /// What went wrong, for the client.
        reason: &'static str,
    },
    /// The caller is known but lacks the permission: 403.
    Denied,
    /// Too many failed logins for this user or from this address: 429.
    Throttled {
        /// Seconds until another attempt is allowed.
        retry_after: u64,
    },
}

/// A verified caller, with the scopes its token carries (`None` for Basic or anonymous).
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who.
    pub caller: Caller,
    /// Token grants, when the caller used a token.
    pub grants: Option<Vec<Grant>>,
}

impl Verified {
    /// No credentials were sent.
    pub fn anonymous() -> Verified {
        Verified {
            caller: Caller::Anonymous,
            grants: None,
        }
    }
}

/// Loaded users, groups, rules and the token key.
pub struct Auth {
    users: HashMap<String, String>,
    dummy_hash: String,
    groups_of: HashMap<String, Vec<String>>,
    rules: Vec<CompiledRule>,
    service: String,
    realm: Option<String>,
    token_ttl: u64,
    key: Vec<u8>,
    /// Recently verified Basic credentials: sha256(user, password) -> (user, expiry).
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Failed logins by user name and by client address.
    failed: FailedLogins,
    /// Whether `/metrics` is served to anonymous clients.
    pub metrics_anonymous: bool,
}

/// The refusal reason for a valid token that lacks the scope a request needs.
pub const NARROW_TOKEN: &str = "the token does not cover this scope";

impl Auth {
    /// Build from config; `key` signs tokens and must be shared by replicas.
    pub fn new(config: &AuthConfig, key: Vec<u8>) -> crate::startup::Result<Auth> {
        let users = users::load(config)?;
        let dummy_hash = users::dummy_hash(&users)?;
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in &config.groups {
            for m in members {
                groups_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
        Ok(Auth {
            users,
            dummy_hash,
            groups_of,
            rules: rules::compile(&config.rules),
            service: config.service.clone(),
            realm: config.realm.clone(),
            token_ttl: config.token_ttl.max(60),
            key,
            verified: Mutex::new(HashMap::new()),
            failed: FailedLogins::new(config),
            metrics_anonymous: config.metrics_anonymous,
        })
    }

    /// Whether `user` is in the htpasswd file (a UI session ends when its user goes).
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Verify an `Authorization` header value sent from `peer`. `None`
    /// header means anonymous.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Verified, Refusal> {
        let Some(value) = authorization else {
            return Ok(Verified::anonymous());
        };
        if let Some(b64) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        {
            let (user, password) = users::decode_basic(b64).ok_or(Refusal::Unauthenticated {
                reason: "malformed Basic credentials",
            })?;
            let ok = tokio::task::block_in_place(|| self.login(&user, &password, peer))
                .map_err(|retry_after| Refusal::Throttled { retry_after })?;
            if !ok {
                return Err(Refusal::Unauthenticated {
                    reason: "invalid username or password",
                });
            }
            return Ok(Verified {
                caller: Caller::User(user),
                grants: None,
            });
        }
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            let claims = self.verify_token(token.trim())?;
            let caller = if claims.sub.is_empty() {
                Caller::Anonymous
            } else if self.users.contains_key(&claims.sub) {
                Caller::User(claims.sub)
            } else {
                return Err(Refusal::Unauthenticated {
                    reason: "the token's user no longer exists",
                });
            };
            return Ok(Verified {
                caller,
                grants: Some(claims.access),
            });
        }
        Err(Refusal::Unauthenticated {
            reason: "unsupported authorization scheme",
        })
    }
}
