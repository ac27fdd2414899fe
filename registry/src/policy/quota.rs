//! `[[quota]]`: a byte budget shared by every repository a glob matches.
//! The store enforces it ([`store::quota`]); this module reads the table,
//! turns it into the store's [`store::Quota`], and words the refusal.

use serde::Deserialize;

use crate::auth::glob_match;
use crate::error::{ApiError, Code};
use crate::events::{Actor, EventData, Events, Kind};
use crate::units::{bytes, parse_bytes};

/// One `[[quota]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRule {
    /// Repository glob: `*` within one path segment, `**` across them.
    pub repositories: String,
    /// The budget: `20GiB`, `500MB`, or a number of bytes.
    pub max_bytes: Size,
    /// Usage, in percent of `max_bytes`, at which a push emits a
    /// `quota_warning` event (default 80).
    pub warn_percent: Option<u8>,
}

/// A size written as a string with a unit, or as a number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A number of bytes.
    Bytes(u64),
    /// `20GiB`, `500 MB`.
    Text(String),
}

impl Size {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            Size::Bytes(n) => Ok(*n),
            Size::Text(t) => parse_bytes(t),
        }
    }
}

/// A rule, checked.
#[derive(Debug, Clone)]
pub struct Quota {
    /// The repository glob (the quota's name).
    pub repositories: String,
    /// The budget in bytes.
    pub max_bytes: u64,
    /// The warning threshold in percent.
    pub warn_percent: u8,
}

impl Quota {
    /// Check one `[[quota]]` table.
    pub fn from_rule(rule: &QuotaRule) -> Result<Quota, String> {
        let err = |e: String| format!("[[quota]] {}: {e}", rule.repositories);
        if rule.repositories.is_empty() {
            return Err("[[quota]]: repositories must not be empty".to_owned());
        }
        let max_bytes = rule
            .max_bytes
            .bytes()
            .map_err(|e| err(format!("max_bytes {e}")))?;
        let warn_percent = rule.warn_percent.unwrap_or(80);
        if warn_percent == 0 || warn_percent > 100 {
            return Err(err(format!(
                "warn_percent {warn_percent} is not between 1 and 100"
            )));
        }
        Ok(Quota {
            repositories: rule.repositories.clone(),
            max_bytes,
            warn_percent,
        })
    }

    /// The store's form of this quota, with `quota_warning` events for `events`.
    pub fn for_store(&self, events: &Events) -> store::Quota {
        let glob = self.repositories.clone();
        let prefix = glob[..glob.find('*').unwrap_or(glob.len())].to_owned();
        let on_warning = events.wants(Kind::QuotaWarning).then(|| {
            let events = events.clone();
            let warn: store::quota::WarningEvents = std::sync::Arc::new(move |c| {
                let data = EventData {
                    repository: c.repo.clone(),
                    quota: Some(c.quota.clone()),
                    used: Some(c.used),
                    limit: Some(c.limit),
                    ..EventData::default()
                };
                let actor = Actor {
                    host: "registry".to_owned(),
                    ..Actor::default()
                };
                events.build(Kind::QuotaWarning, &actor, data)
            });
            warn
        });
        store::Quota {
            name: glob.clone(),
            prefix,
            covers: std::sync::Arc::new(move |repo| glob_match(&glob, repo)),
            max_bytes: self.max_bytes,
            warn_bytes: Some(
                (u128::from(self.max_bytes) * u128::from(self.warn_percent) / 100) as u64,
            ),
            on_warning,
        }
    }
}

/// `DENIED` for a write the store refused under a quota, with used/limit.
pub fn refusal(quota: &str, used: u64, adding: u64, limit: u64) -> ApiError {
    ApiError::new(Code::Denied)
        .message(format!(
            "quota {quota:?} exceeded: {} used of {}, this push needs {} more",
            bytes(used),
            bytes(limit),
            bytes(adding)
        ))
        .detail(format!(
            "used {used} bytes, limit {limit} bytes, needed {adding} bytes: delete images \
             (then run GC) or ask for a larger [[quota]]"
        ))
}

/// One quota with what its repositories hold now.
#[derive(Debug, Clone)]
pub struct QuotaUsage {
    /// The quota.
    pub quota: Quota,
    /// Its usage.
    pub usage: store::Usage,
}

impl QuotaUsage {
    /// Usage in percent of the budget (rounded down).
    pub fn percent(&self) -> u64 {
        if self.quota.max_bytes == 0 {
            return 100;
        }
        (u128::from(self.usage.used) * 100 / u128::from(self.quota.max_bytes)) as u64
    }

    /// The JSON of `registry usage --json` and the UI's usage API.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "repositories": self.quota.repositories,
            "limit": self.quota.max_bytes,
            "used": self.usage.used,
            "percent": self.percent(),
            "warn_percent": self.quota.warn_percent,
            "logical": self.usage.logical,
            "dedup_saving": self.usage.saving(),
            "repos": self.usage.repos.iter()
                .map(|(name, bytes)| serde_json::json!({"name": name, "bytes": bytes}))
                .collect::<Vec<_>>(),
        })
    }
}

/// The usage of every quota of `policies`, in configuration order.
pub async fn usage(
    store: &store::Store,
    policies: &super::Policies,
) -> store::Result<Vec<QuotaUsage>> {
    let mut out = Vec::new();
    for quota in policies.quotas() {
        let usage = store.usage(&quota.for_store(&Events::default())).await?;
        out.push(QuotaUsage {
            quota: quota.clone(),
            usage,
        });
    }
    Ok(out)
}

/// The quota gauges of `/metrics`: used and limit bytes per quota.
pub fn render_metrics(report: &[QuotaUsage]) -> String {
    use std::fmt::Write;
    if report.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for (name, help, value) in [
        (
            "strata_quota_used_bytes",
            "Distinct bytes held by the repositories of each [[quota]].",
            (|q: &QuotaUsage| q.usage.used) as fn(&QuotaUsage) -> u64,
        ),
        (
            "strata_quota_limit_bytes",
            "The budget of each [[quota]].",
            |q: &QuotaUsage| q.quota.max_bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for q in report {
            let label = q
                .quota
                .repositories
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{quota=\"{label}\"}} {}", value(q));
        }
    }
    out
}

/// The table `registry usage` prints: one line per quota, then its repositories.
pub fn render_text(report: &[QuotaUsage]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>10} {:>10} {:>5} {:>12}",
        "QUOTA", "USED", "LIMIT", "USE%", "DEDUP SAVED"
    );
    for q in report {
        let _ = writeln!(
            out,
            "{:<32} {:>10} {:>10} {:>4}% {:>12}",
            q.quota.repositories,
            bytes(q.usage.used),
            bytes(q.quota.max_bytes),
            q.percent(),
            bytes(q.usage.saving())
        );
        for (repo, n) in &q.usage.repos {
            let _ = writeln!(out, "  {:<30} {:>10}", repo, bytes(*n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<Quota, String> {
        let r: QuotaRule = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Quota::from_rule(&r)
    }

    #[test]
    fn rules_read_sizes_and_cover_their_glob() {
        let q = rule("repositories = \"team-a/**\"\nmax_bytes = \"20GiB\"").unwrap();
        assert_eq!(q.max_bytes, 20 << 30);
        assert_eq!(q.warn_percent, 80);
        let s = q.for_store(&Events::default());
        assert_eq!(s.prefix, "team-a/");
        assert!(s.covers_repo("team-a/app/x"));
        assert!(!s.covers_repo("team-b/app"));
        assert!(s.on_warning.is_none());
        assert_eq!(
            rule("repositories = \"a\"\nmax_bytes = 10")
                .unwrap()
                .max_bytes,
            10
        );
        assert!(rule("repositories = \"a\"\nmax_bytes = \"10 parsecs\"").is_err());
        assert!(rule("repositories = \"a\"\nmax_bytes = 1\nwarn_percent = 0").is_err());
    }
}
