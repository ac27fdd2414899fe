//! The audit log (`[audit] file`): one JSON line for every write and every
//! refused request (who, from where, what, the result), apart from the
//! access log; and `registry audit`, which reads it back with filters.
//!
//! ```json
//! {"time":"2026-12-02T01:46:55.123Z","user":"alice","client":"10.0.0.7","method":"PUT",
//!  "path":"/v2/prod/app/manifests/v1","repository":"prod/app","action":"push",
//!  "status":403,"result":"denied","error":"DENIED","message":"tag prod/app:v1 is immutable (...)"}
//! ```
//! `user` is the authenticated user; for a refused login it is the name the
//! client sent (`claimed_user`), never its password. Uses only `rfc3339`,
//! `auth::glob_match` and the duration parser of `mirror::config`.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON-lines file entries are appended to; `-` for stdout.
    pub file: PathBuf,
}

/// Where entries go (nowhere without `[audit]`).
#[derive(Default)]
pub struct Audit {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
}

/// What the audit log needs of a request, taken before it is handled.
pub struct Pending {
    method: Method,
    path: String,
    repository: Option<String>,
    client: Option<IpAddr>,
    claimed_user: Option<String>,
    mount: bool,
    /// A login at `/token`: only its refusals are recorded.
    login: bool,
}

impl Pending {
    /// The parts of `request` the entry needs; `repository` from its route.
    pub fn of(request: &axum::extract::Request, repository: Option<String>) -> Pending {
        let claimed_user = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, _)| u.to_owned()));
        Pending {
            login: request.uri().path() == "/token",
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            repository,
            client: request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
            claimed_user,
            mount: request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("mount="))),
        }
    }

    fn action(&self) -> &'static str {
        if self.login {
            return "login";
        }
        match self.method {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "delete",
            _ if self.mount => "mount",
            _ => "push",
        }
    }
}

impl Audit {
    /// Open the sink of `[audit]` (appending to its file).
    pub fn open(config: Option<&AuditConfig>) -> Result<Audit, String> {
        let Some(c) = config else {
            return Ok(Audit::default());
        };
        let sink: Box<dyn Write + Send> = if c.file.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&c.file)
                    .map_err(|e| format!("[audit] file {}: {e}", c.file.display()))?,
            )
        };
        Ok(Audit {
            sink: Some(Mutex::new(sink)),
        })
    }

    /// Record the request if it wrote or was refused. `user` is the
    /// authenticated caller ("" for anonymous), when authentication ran;
    /// `response` is the answer.
    pub fn record(&self, p: Pending, user: Option<&str>, response: &axum::response::Response) {
        let Some(sink) = &self.sink else { return };
        let status = response.status();
        let code = response.extensions().get::<crate::error::Code>().copied();
        let denied = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            || matches!(
                code,
                Some(crate::error::Code::Denied | crate::error::Code::Unauthorized)
            );
        let write = !p.login && !matches!(p.method, Method::GET | Method::HEAD);
        if !write && !denied {
            return;
        }
        let result = if denied {
            "denied"
        } else if status.is_success() {
            "ok"
        } else {
            "error"
        };
        let mut entry = json!({
            "time": crate::rfc3339::format_ms(store::now_ms()),
            "user": user.filter(|u| !u.is_empty()),
            "client": p.client.map(|c| c.to_string()),
            "method": p.method.as_str(),
            "path": p.path,
            "repository": p.repository,
            "action": p.action(),
            "status": status.as_u16(),
            "result": result,
        });
        if user.is_none() {
            entry["claimed_user"] = json!(p.claimed_user);
        }
        if let Some(code) = code {
            entry["error"] = json!(code.entry().0);
        }
        if let Some(message) = response.extensions().get::<AuditMessage>() {
            entry["message"] = json!(message.0);
        }
        let mut line = entry.to_string();
        line.push('\n');
        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

/// The message of a refusal, kept on the response for its audit entry.
#[derive(Debug, Clone)]
pub struct AuditMessage(pub String);

/// What `registry audit` selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Entries at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Entries of this user (authenticated or claimed).
    pub user: Option<String>,
    /// Entries about repositories matching this glob.
    pub repository: Option<String>,
}

impl Filter {
    /// `--since`: an RFC 3339 time, a date, or an age such as `2h`.
    pub fn since(text: &str) -> Result<i64, String> {
        if let Some(ms) = crate::rfc3339::parse_ms(text) {
            return Ok(ms);
        }
        let age = crate::mirror::config::parse_duration(text).map_err(|_| {
            format!("--since {text:?}: expected a time (2026-12-02T01:00:00Z), a date or an age (90m, 2h, 7d)")
        })?;
        Ok(store::now_ms() - age.as_millis() as i64)
    }

    fn keeps(&self, v: &Value) -> bool {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        if let Some(since) = self.since_ms {
            let at = text("time").and_then(crate::rfc3339::parse_ms);
            if at.is_none_or(|t| t < since) {
                return false;
            }
        }
        if let Some(user) = &self.user {
            if text("user").or(text("claimed_user")) != Some(user.as_str()) {
                return false;
            }
        }
        if let Some(glob) = &self.repository {
            if !text("repository").is_some_and(|r| crate::auth::glob_match(glob, r)) {
                return false;
            }
        }
        true
    }
}

/// Copy the entries of `input` that `filter` keeps to `out`; how many.
/// Lines that are not JSON objects are skipped.
pub fn query(input: impl BufRead, filter: &Filter, mut out: impl Write) -> std::io::Result<u64> {
    let mut n = 0;
    for line in input.lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.is_object() && filter.keeps(&v) {
            writeln!(out, "{line}")?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_filters_by_user_repository_and_time() {
        let log = concat!(
            r#"{"time":"2026-01-01T00:00:00.000Z","user":"alice","repository":"prod/app","action":"push"}"#,
            "\n",
            r#"{"time":"2026-01-02T00:00:00.000Z","user":null,"claimed_user":"bob","repository":"dev/x","action":"push"}"#,
            "\nnot json\n",
        );
        let run = |f: Filter| {
            let mut out = Vec::new();
            query(log.as_bytes(), &f, &mut out).unwrap();
            String::from_utf8(out).unwrap().lines().count()
        };
        assert_eq!(run(Filter::default()), 2);
        assert_eq!(
            run(Filter {
                user: Some("bob".into()),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            run(Filter {
                repository: Some("prod/**".into()),
                ..Filter::default()
            }),
            1
        );
        assert_eq!(
            run(Filter {
                since_ms: Filter::since("2026-01-01T12:00:00Z").ok(),
                ..Filter::default()
            }),
            1
        );
    }
}
