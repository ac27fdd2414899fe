//! The HTTP client of one upstream registry: requests under its base URL
//! (taken from the configuration only), and the answer to its
//! `WWW-Authenticate` challenge: Basic with the configured credentials, or
//! the Bearer token dance (the token service's realm, scoped to one
//! repository's pull), tokens cached until shortly before they expire.
//!
//! Bodies read whole (manifests, tokens, error bodies) are bounded; the
//! credentials and tokens never appear in an error or a log line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::config::UpstreamConfig;
use super::error::{UpstreamError, UpstreamResult};

/// The media types asked for when fetching a manifest.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// The most bytes read from a token service's answer.
const TOKEN_LIMIT: usize = 64 * 1024;

/// A Bearer token, cached per scope.
struct Token {
    value: String,
    until: Instant,
}

/// How the upstream asked to be authenticated, learnt from its challenge.
#[derive(Clone)]
enum Scheme {
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The client of one upstream.
pub struct UpstreamClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<(String, String)>,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<String, Token>>,
}

impl UpstreamClient {
    /// A client for `config`'s upstream (its password file read now).
    pub fn new(config: &UpstreamConfig) -> Result<UpstreamClient, String> {
        let credentials = match (&config.username, &config.password_file) {
            (Some(user), Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    format!(
                        "upstream {}: cannot read password_file {}: {e}",
                        config.name,
                        file.display()
                    )
                })?;
                let password = text.lines().next().unwrap_or("").to_owned();
                Some((user.clone(), password))
            }
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.timeout())
            .read_timeout(config.timeout())
            .user_agent(concat!("strata-registry/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = &config.ca_file {
            // A private CA, trusted besides the webpki roots.
            let name = &config.name;
            let pem = std::fs::read(file).map_err(|e| {
                format!(
                    "upstream {name}: cannot read ca_file {}: {e}",
                    file.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("upstream {name}: ca_file {}: {e}", file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "upstream {name}: ca_file {} holds no PEM certificate",
                    file.display()
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("upstream {}: {e}", config.name))?;
        Ok(UpstreamClient {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            credentials,
            scheme: Mutex::new(Scheme::Anonymous),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `GET`/`HEAD` a manifest. `repo` and `reference` are validated names.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        method: Method,
    ) -> UpstreamResult<reqwest::Response> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send(method, &pull_scope(repo), &path, Some(MANIFEST_ACCEPT))
            .await
    }

    /// `GET`/`HEAD` a blob.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &store::Digest,
        method: Method,
    ) -> UpstreamResult<reqwest::Response> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        self.send(method, &pull_scope(repo), &path, None).await
    }

    /// `GET` the referrers index of `digest` (OCI 1.1's referrers API).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &store::Digest,
    ) -> UpstreamResult<reqwest::Response> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        self.send(
            Method::GET,
            &pull_scope(repo),
            &path,
            Some("application/vnd.oci.image.index.v1+json"),
        )
        .await
    }

    /// The names of a listing, `tags/list` of `repo` or (`None`) the
    /// `_catalog`, following `Link: <...>; rel="next"` on the same upstream,
    /// at most `max` names.
    pub async fn list(&self, repo: Option<&str>, max: usize) -> UpstreamResult<Vec<String>> {
        let (scope, key, mut path) = match repo {
            Some(repo) => (
                pull_scope(repo),
                "tags",
                format!("/v2/{repo}/tags/list?n=1000"),
            ),
            None => (
                "registry:catalog:*".to_owned(),
                "repositories",
                "/v2/_catalog?n=1000".to_owned(),
            ),
        };
        let mut names = Vec::new();
        loop {
            let response = self.send(Method::GET, &scope, &path, None).await?;
            let next = response
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| next_link(v, &self.base));
            let body = read_bounded(response, 4 << 20).await?;
            let page: serde_json::Value =
                serde_json::from_slice(&body).map_err(|_| UpstreamError::Invalid {
                    what: "a listing is not JSON".into(),
                })?;
            let page = page
                .get(key)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            if page.is_empty() {
                break;
            }
            names.extend(page.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            match next {
                Some(n) if names.len() < max => path = n,
                _ => break,
            }
        }
        names.truncate(max);
        Ok(names)
    }

    /// Send a request, answering one authentication challenge; any status
    /// other than 2xx is an [`UpstreamError`].
    async fn send(
        &self,
        method: Method,
        scope: &str,
        path: &str,
        accept: Option<&str>,
    ) -> UpstreamResult<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut retried = false;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(auth) = self.authorization(scope).await? {
                request = request.header(AUTHORIZATION, auth);
            }
            let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !retried {
                if let Some(scheme) = challenge(response.headers()) {
                    retried = true;
                    drain(response).await;
                    self.tokens.lock().expect("tokens lock").remove(scope);
                    *self.scheme.lock().expect("scheme lock") = scheme;
                    continue;
                }
            }
            drain(response).await;
            return Err(UpstreamError::from_status(status));
        }
    }

    /// The `Authorization` header for a request needing `scope`, fetching a
    /// token first when the upstream asked for Bearer and none is cached.
    async fn authorization(&self, scope: &str) -> UpstreamResult<Option<String>> {
        let scheme = self.scheme.lock().expect("scheme lock").clone();
        match scheme {
            Scheme::Anonymous => Ok(None),
            Scheme::Basic => Ok(self.basic()),
            Scheme::Bearer { realm, service } => {
                if let Some(t) = self.tokens.lock().expect("tokens lock").get(scope) {
                    if t.until > Instant::now() {
                        return Ok(Some(format!("Bearer {}", t.value)));
                    }
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let header = format!("Bearer {}", token.value);
                self.tokens
                    .lock()
                    .expect("tokens lock")
                    .insert(scope.to_owned(), token);
                Ok(Some(header))
            }
        }
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            let raw = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// The token service's answer for `scope`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> UpstreamResult<Token> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(basic) = self.basic() {
            request = request.header(AUTHORIZATION, basic);
        }
        let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
        if !response.status().is_success() {
            let status = response.status();
            drain(response).await;
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamError::Denied {
                    status: status.as_u16(),
                },
                s => UpstreamError::from_status(s),
            });
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_bounded(response, TOKEN_LIMIT).await?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| UpstreamError::Invalid {
            what: "the token service's answer is not JSON".into(),
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| UpstreamError::Invalid {
                what: "the token service's answer holds no token".into(),
            })?;
        // Kept until 30 s before it expires (60 s: the spec's default lifetime).
        let life = answer.expires_in.unwrap_or(60).max(60) - 30;
        Ok(Token {
            value,
            until: Instant::now() + Duration::from_secs(life),
        })
    }
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The path of a `Link: <...>; rel="next"` header, when it stays on `base`
/// (a relative `/v2/...` path, or an absolute URL under `base`).
fn next_link(link: &str, base: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") {
        return None;
    }
    let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    let path = target.strip_prefix(base).unwrap_or(target);
    (path.starts_with("/v2/") && !path.contains("://")).then(|| path.to_owned())
}

/// The scheme a 401's `WWW-Authenticate` asks for.
fn challenge(headers: &HeaderMap) -> Option<Scheme> {
    let header = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Scheme::Basic),
        "bearer" => {
            let params = challenge_params(rest);
            let realm = params.get("realm")?.clone();
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                return None;
            }
            Some(Scheme::Bearer {
                realm,
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key=value` pairs of a challenge, keys lower-cased.
fn challenge_params(mut rest: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        params.insert(key, value.trim().to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    params
}

/// Read a body whole, refusing past `limit` bytes.
pub async fn read_bounded(response: reqwest::Response, limit: usize) -> UpstreamResult<Bytes> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(UpstreamError::TooLarge { limit });
    }
    let mut stream = response.bytes_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(UpstreamError::from_reqwest)?;
        if buf.len() + chunk.len() > limit {
            return Err(UpstreamError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Read and drop up to 64 KiB of an unwanted body, so the connection can be
/// reused; a longer body closes it.
async fn drain(response: reqwest::Response) {
    let _ = read_bounded(response, 64 * 1024).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_gives_realm_and_service() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull\""
                .parse()
                .unwrap(),
        );
        match challenge(&h) {
            Some(Scheme::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.docker.io/token");
                assert_eq!(service.as_deref(), Some("registry.docker.io"));
            }
            _ => panic!("not a bearer challenge"),
        }
    }

    #[test]
    fn next_links_stay_on_the_upstream() {
        let base = "http://up:5000";
        let link = "</v2/_catalog?last=b&n=2>; rel=\"next\"";
        assert_eq!(
            next_link(link, base).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        let absolute = "<http://up:5000/v2/a/tags/list?last=x>; rel=\"next\"";
        assert_eq!(
            next_link(absolute, base).as_deref(),
            Some("/v2/a/tags/list?last=x")
        );
        assert_eq!(next_link("<http://evil/v2/x>; rel=\"next\"", base), None);
        assert_eq!(next_link("</v2/x>; rel=\"prev\"", base), None);
    }

    #[test]
    fn realm_that_is_not_http_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            "Bearer realm=\"file:///etc/passwd\"".parse().unwrap(),
        );
        assert!(challenge(&h).is_none());
    }
}
