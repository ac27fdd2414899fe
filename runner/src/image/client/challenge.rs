//! Answering a registry's `WWW-Authenticate` challenge: Basic with the
//! stored credentials, or Bearer with a token fetched from the challenge's
//! realm (the credentials go there, not to the registry).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use super::errors::{Error, Result};
use super::{read_body, Client};

fn challenge_params(header: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v.to_owned(), n),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_owned(), n),
                None => (after.trim().to_owned(), ""),
            }
        };
        params.insert(key, value);
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Client {
    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// The error for credentials that are missing, or that were refused.
    pub(super) fn credentials_error(&self) -> Error {
        match &self.credentials {
            None => Error::CredentialsNeeded {
                host: self.registry.clone(),
            },
            Some(c) => Error::CredentialsRefused {
                host: self.registry.clone(),
                username: c.username.clone(),
            },
        }
    }

    /// Answers a 401 challenge: returns the Authorization header value to retry with.
    pub(super) fn authenticate(&self, challenge: &str) -> Result<String> {
        let (scheme, params) = challenge_params(challenge);
        let auth_err = |message: String| Error::Auth {
            host: self.registry.clone(),
            message,
        };
        match scheme.as_str() {
            "basic" => self.basic().ok_or_else(|| self.credentials_error()),
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| auth_err("Bearer challenge without realm".into()))?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(basic) = self.basic() {
                    req = req.set("Authorization", &basic);
                }
                let resp = match req.call() {
                    Ok(resp) => resp,
                    Err(ureq::Error::Status(401 | 403, _)) => return Err(self.credentials_error()),
                    Err(ureq::Error::Status(status, resp)) => {
                        let e = super::errors::OciError::parse(&super::read_error_body(resp));
                        return Err(auth_err(format!(
                            "the token endpoint answered {status}: {}",
                            e.summary()
                        )));
                    }
                    Err(ureq::Error::Transport(t)) => {
                        return Err(auth_err(format!("token endpoint {realm}: {}", t.kind())))
                    }
                };
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_body(resp, realm)?;
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| auth_err(e.to_string()))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| auth_err("token response without token".into()))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(auth_err(format!("unsupported auth scheme {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::image::auth::Credentials;
    use crate::image::client::Settings;
    use crate::image::reference::Reference;

    #[test]
    fn parses_bearer_challenge() {
        let (scheme, p) = challenge_params(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull");
    }

    /// A tiny registry that demands a Bearer token from its own token endpoint.
    fn token_registry() -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (mut conn, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    head.push(line.trim().to_owned());
                }
                let request = head.join("\n");
                let (status, extra, body) = if request.starts_with("GET /token") {
                    (200, String::new(), r#"{"token":"T0K"}"#.to_owned())
                } else if request.contains("Bearer T0K") {
                    (200, String::new(), "{}".to_owned())
                } else {
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"reg\",scope=\"repository:team/app:pull\"\r\n"
                    );
                    (401, challenge, "{}".to_owned())
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(reply.as_bytes()).unwrap();
                seen.push(request);
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn bearer_challenge_is_answered_with_a_token_from_the_realm() {
        let (addr, server) = token_registry();
        let reference: Reference = format!("{addr}/team/app").parse().unwrap();
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let settings = Settings {
            insecure_registries: vec![addr.clone()],
            certs_dir: None,
        };
        Client::new(&reference, &settings, Some(creds))
            .unwrap()
            .check_login()
            .unwrap();
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("GET /v2/ "), "{seen:?}");
        assert!(seen[1].starts_with("GET /token?"), "{seen:?}");
        assert!(
            seen[1].contains("scope=repository%3Ateam%2Fapp%3Apull"),
            "{seen:?}"
        );
        assert!(seen[1].contains("service=reg"), "{seen:?}");
        // Basic credentials go to the token endpoint: base64("u:p").
        assert!(seen[1].contains("Basic dTpw"), "{seen:?}");
        assert!(seen[2].contains("Bearer T0K"), "{seen:?}");
    }
}
