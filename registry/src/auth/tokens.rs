//! Bearer tokens: HS256 JWTs whose `access` claim holds the granted scopes,
//! signed with the key shared by every replica; and the `WWW-Authenticate`
//! challenge that sends clients to the token endpoint.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Actions, Auth, Caller, Refusal};

/// The `iss` of every token.
pub(super) const ISSUER: &str = "strata";

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

/// A token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) aud: String,
    pub(super) exp: u64,
    pub(super) nbf: u64,
    pub(super) iat: u64,
    pub(super) jti: String,
    pub(super) access: Vec<Grant>,
}

/// Seconds since the epoch.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
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

    pub(super) fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    pub(super) fn verify_token(&self, token: &str) -> Result<Claims, Refusal> {
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
