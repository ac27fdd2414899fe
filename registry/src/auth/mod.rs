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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::AuthConfig;
use crate::limits::RateLimiter;

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

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name or `catalog`.
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Grant>,
}

/// A verified caller, with the scopes its token carries (`None` for Basic or anonymous).
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who.
    pub caller: Caller,
    /// Token grants, when the caller used a token.
    pub grants: Option<Vec<Grant>>,
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
    /// Failed logins by user name.
    failed_users: RateLimiter<String>,
    /// Failed logins by client address.
    failed_addrs: RateLimiter<IpAddr>,
    /// Whether `/metrics` is served to anonymous clients.
    pub metrics_anonymous: bool,
}

struct CompiledRule {
    repositories: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    anonymous: bool,
    actions: Actions,
}

const ISSUER: &str = "strata";
/// The refusal reason for a valid token that lacks the scope a request needs.
pub const NARROW_TOKEN: &str = "the token does not cover this scope";
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Match a repository name against a glob: `*` within a component, `**` across.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=n.len()).any(|i| go(&p[2..], &n[i..])),
            Some(b'*') => {
                let stop = n.iter().position(|&c| c == b'/').unwrap_or(n.len());
                (0..=stop).any(|i| go(&p[1..], &n[i..]))
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Parse an htpasswd file: `user:bcrypt-hash` lines.
pub fn parse_htpasswd(text: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("htpasswd line {}: expected user:hash", i + 1))?;
        if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            anyhow::bail!(
                "htpasswd line {}: only bcrypt entries are supported (htpasswd -B)",
                i + 1
            );
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

impl Auth {
    /// Build from config; `key` signs tokens and must be shared by replicas.
    pub fn new(config: &AuthConfig, key: Vec<u8>) -> anyhow::Result<Auth> {
        let users =
            match &config.htpasswd {
                Some(path) => parse_htpasswd(&std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read htpasswd {}: {e}", path.display())
                })?)?,
                None => HashMap::new(),
            };
        let cost = users
            .values()
            .next()
            .and_then(|h| h.get(4..6))
            .and_then(|c| c.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy_hash = bcrypt::hash("not a password", cost)?;
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in &config.groups {
            for m in members {
                groups_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
        let mut rules: Vec<CompiledRule> = config
            .rules
            .iter()
            .map(|r| CompiledRule {
                repositories: r.repositories.clone(),
                users: r.users.clone(),
                groups: r.groups.clone(),
                anonymous: r.anonymous,
                actions: Actions::parse(r.actions.iter().map(String::as_str)),
            })
            .collect();
        if rules.is_empty() {
            rules.push(CompiledRule {
                repositories: vec!["**".to_owned()],
                users: vec!["*".to_owned()],
                groups: Vec::new(),
                anonymous: false,
                actions: Actions::ALL,
            });
        }
        Ok(Auth {
            users,
            dummy_hash,
            groups_of,
            rules,
            service: config.service.clone(),
            realm: config.realm.clone(),
            token_ttl: config.token_ttl.max(60),
            key,
            verified: Mutex::new(HashMap::new()),
            failed_users: failure_limiter(config),
            failed_addrs: failure_limiter(config),
            metrics_anonymous: config.metrics_anonymous,
        })
    }

    /// What `caller` may do on `repo`, by the rules.
    pub fn permitted(&self, caller: &Caller, repo: &str) -> Actions {
        let no_groups = Vec::new();
        let groups = match caller {
            Caller::User(u) => self.groups_of.get(u).unwrap_or(&no_groups),
            Caller::Anonymous => &no_groups,
        };
        self.rules
            .iter()
            .filter(|r| r.repositories.iter().any(|p| glob_match(p, repo)))
            .filter(|r| match caller {
                Caller::Anonymous => r.anonymous,
                Caller::User(u) => {
                    r.users.iter().any(|x| x == u || x == "*")
                        || r.groups.iter().any(|g| groups.contains(g))
                }
            })
            .fold(Actions::default(), |acc, r| acc.union(r.actions))
    }

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
        self.failed_users.peek(user.to_owned())?;
        if let Some(ip) = peer {
            self.failed_addrs.peek(ip)?;
        }
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
            let _ = self.failed_users.check(user.to_owned());
            if let Some(ip) = peer {
                let _ = self.failed_addrs.check(ip);
            }
        }
        Ok(ok)
    }

    /// Verify an `Authorization` header value sent from `peer`. `None`
    /// header means anonymous.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Verified, Refusal> {
        let Some(value) = authorization else {
            return Ok(Verified {
                caller: Caller::Anonymous,
                grants: None,
            });
        };
        if let Some(b64) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        {
            let (user, password) = decode_basic(b64).ok_or(Refusal::Unauthenticated {
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

    /// Whether `who` may do `action` on `repo`; with a token, it must also carry the scope.
    pub fn check(&self, who: &Verified, repo: &str, action: Action) -> Result<(), Refusal> {
        if !self.permitted(&who.caller, repo).has(action) {
            return Err(match who.caller {
                Caller::Anonymous => Refusal::Unauthenticated {
                    reason: "authentication required",
                },
                Caller::User(_) => Refusal::Denied,
            });
        }
        if let Some(grants) = &who.grants {
            let scoped = grants
                .iter()
                .filter(|g| g.kind == "repository" && g.name == repo)
                .any(|g| Actions::parse(g.actions.iter().map(String::as_str)).has(action));
            if !scoped {
                return Err(Refusal::Unauthenticated {
                    reason: NARROW_TOKEN,
                });
            }
        }
        Ok(())
    }

    /// The `WWW-Authenticate` value for a refused request.
    pub fn challenge(
        &self,
        host: &str,
        tls: bool,
        scope: Option<&str>,
        error: Option<&str>,
    ) -> String {
        let realm = match &self.realm {
            Some(r) => r.clone(),
            None => format!("{}://{host}/token", if tls { "https" } else { "http" }),
        };
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.service);
        if let Some(scope) = scope {
            c.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(error) = error {
            c.push_str(&format!(",error=\"{error}\""));
        }
        c
    }

    /// Issue a token for `caller`, granting the requested scopes as far as the rules allow.
    pub fn issue_token(&self, caller: &Caller, scopes: &[String]) -> (String, u64) {
        let mut access = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let kind = kind.split('(').next().unwrap_or(kind);
            let asked = Actions::parse(actions.split(','));
            let granted = match kind {
                "repository" => asked.intersect(self.permitted(caller, name)),
                "registry" if name == "catalog" => Actions::parse(["pull"]),
                _ => Actions::default(),
            };
            let mut names = granted.names();
            if kind == "registry" && !names.is_empty() {
                names = vec!["*".to_owned()];
            }
            access.push(Grant {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions: names,
            });
        }
        let iat = now();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: caller.name().to_owned(),
            aud: self.service.clone(),
            exp: iat + self.token_ttl,
            nbf: iat.saturating_sub(10),
            iat,
            jti: hex::encode(rand_bytes()),
            access,
        };
        (self.sign(&claims), self.token_ttl)
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    fn verify_token(&self, token: &str) -> Result<Claims, Refusal> {
        let bad = |reason| Refusal::Unauthenticated { reason };
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("malformed token"));
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(bad("malformed token"))?;
        if header["alg"] != "HS256" {
            return Err(bad("unsupported token algorithm"));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad("malformed token"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{h}.{p}").as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| bad("invalid token signature"))?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(bad("malformed token"))?;
        let now = now();
        if claims.exp <= now {
            return Err(bad("token expired"));
        }
        if claims.nbf > now + 60 || claims.iss != ISSUER || claims.aud != self.service {
            return Err(bad("token not valid for this registry"));
        }
        Ok(claims)
    }
}

fn failure_limiter<K: std::hash::Hash + Eq + Clone>(config: &AuthConfig) -> RateLimiter<K> {
    RateLimiter::new(
        config.failed_logins_per_minute.max(0.001) / 60.0,
        f64::from(config.failed_login_burst.max(1)),
    )
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Random bytes for token ids and signing keys.
pub fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom(&mut b);
    b
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rule;

    fn auth(rules: Vec<Rule>) -> Auth {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        let hash = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(&file, format!("alice:{hash}\nbob:{hash}\n")).unwrap();
        let mut config = AuthConfig {
            htpasswd: Some(file),
            rules,
            ..Default::default()
        };
        config.groups.insert("devs".into(), vec!["bob".into()]);
        Auth::new(&config, b"key".to_vec()).unwrap()
    }

    fn rule(
        repos: &[&str],
        users: &[&str],
        groups: &[&str],
        anonymous: bool,
        actions: &[&str],
    ) -> Rule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Rule {
            repositories: s(repos),
            users: s(users),
            groups: s(groups),
            anonymous,
            actions: s(actions),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("team/*", "team/app"));
        assert!(!glob_match("team/*", "team/app/sub"));
        assert!(glob_match("team/**", "team/app/sub"));
        assert!(glob_match("**", "a/b/c"));
        assert!(glob_match("*-public", "x-public"));
        assert!(!glob_match("team/*", "other/app"));
    }

    #[test]
    fn rules_for_users_groups_and_anonymous() {
        let a = auth(vec![
            rule(&["team/**"], &["alice"], &[], false, &["pull", "push"]),
            rule(&["team/**"], &[], &["devs"], false, &["pull"]),
            rule(&["public/*"], &[], &[], true, &["pull"]),
        ]);
        let alice = Caller::User("alice".into());
        let bob = Caller::User("bob".into());
        assert!(a.permitted(&alice, "team/x").has(Action::Push));
        assert!(!a.permitted(&alice, "team/x").has(Action::Delete));
        assert!(a.permitted(&bob, "team/x").has(Action::Pull));
        assert!(!a.permitted(&bob, "team/x").has(Action::Push));
        assert!(a
            .permitted(&Caller::Anonymous, "public/x")
            .has(Action::Pull));
        assert!(!a.permitted(&Caller::Anonymous, "team/x").has(Action::Pull));
    }

    #[test]
    fn htpasswd_alone_grants_every_user_everything() {
        let a = auth(vec![]);
        assert_eq!(
            a.permitted(&Caller::User("bob".into()), "any/repo"),
            Actions::ALL
        );
        assert_eq!(
            a.permitted(&Caller::Anonymous, "any/repo"),
            Actions::default()
        );
    }

    #[test]
    fn passwords() {
        let a = auth(vec![]);
        assert!(a.check_password("alice", "secret"));
        assert!(a.check_password("alice", "secret"), "cached");
        assert!(!a.check_password("alice", "wrong"));
        assert!(!a.check_password("mallory", "secret"));
    }

    #[test]
    fn failed_logins_are_limited_per_user_and_per_address_but_successes_are_cached() {
        let a = auth(vec![]);
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let elsewhere: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(a.login("alice", "secret", Some(attacker)), Ok(true));
        for _ in 0..10 {
            assert_eq!(a.login("alice", "guess", Some(attacker)), Ok(false));
        }
        assert!(a.login("alice", "guess", Some(attacker)).is_err());
        assert!(
            a.login("alice", "guess", Some(elsewhere)).is_err(),
            "per user"
        );
        assert!(
            a.login("bob", "secret", Some(attacker)).is_err(),
            "per address"
        );
        assert_eq!(a.login("bob", "secret", Some(elsewhere)), Ok(true));
        assert_eq!(
            a.login("alice", "secret", Some(attacker)),
            Ok(true),
            "a cached success still passes"
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let a = auth(vec![rule(&["team/*"], &["alice"], &[], false, &["pull"])]);
        let alice = Caller::User("alice".into());
        let (token, ttl) = a.issue_token(&alice, &["repository:team/x:pull,push".into()]);
        assert!(ttl >= 60);
        let claims = a.verify_token(&token).unwrap();
        assert_eq!(claims.access[0].actions, ["pull"], "push is not granted");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"iss":"strata","sub":"alice","aud":"strata","exp":u64::MAX,"nbf":0,"iat":0,"jti":"x",
                "access":[{"type":"repository","name":"team/x","actions":["pull","push"]}]}))
            .unwrap(),
        );
        parts[1] = &forged;
        assert!(a.verify_token(&parts.join(".")).is_err());
        let other = Auth::new(&AuthConfig::default(), b"other key".to_vec()).unwrap();
        assert!(other.verify_token(&token).is_err());
        let expired = a.sign(&Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: "strata".into(),
            exp: now() - 1,
            nbf: 0,
            iat: 0,
            jti: "x".into(),
            access: vec![],
        });
        assert_eq!(
            a.verify_token(&expired).unwrap_err(),
            Refusal::Unauthenticated {
                reason: "token expired"
            }
        );
    }
}
