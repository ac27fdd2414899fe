//! `[[retention]]`: which tags and manifests of matching repositories go.
//!
//! A repository is judged by the first rule (in file order) whose
//! `repositories` glob matches it. First each tag: it stays if any keep
//! rule keeps it (`keep_last` by push time, a `keep_tags` glob,
//! `keep_pulled_within` by its manifest's last pull) or an `[[immutable]]`
//! rule covers it; else it goes. A rule with no keep rule at all leaves
//! tags alone. Then each manifest: it goes only when nothing keeps it (no
//! tag left, no index left referring to it, no subject left for a
//! referrer) and it has been untagged longer than `delete_untagged_after`;
//! without that setting, manifests stay. Several tags on one manifest are
//! each judged, and the manifest stays while any of them does.
//!
//! [`judge`] is a pure function of the rule and a repository's
//! [`store::RetentionFacts`]; `pruning` carries the verdict out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use store::{Digest, ManifestFact, RetentionFacts, TagFact};

use crate::auth::glob_match;
use crate::mirror::config::parse_duration;

/// One `[[retention]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Repository glob: `*` within one path segment, `**` across them.
    pub repositories: String,
    /// Keep the tags most recently pushed, this many.
    pub keep_last: Option<usize>,
    /// Keep tags matching any of these globs.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Keep tags whose manifest was pulled within this time (`30d`).
    pub keep_pulled_within: Option<String>,
    /// Delete manifests untagged for longer than this (`1d`); never when absent.
    pub delete_untagged_after: Option<String>,
    /// Run inside `registry serve` this often (`1h`); only on demand when absent.
    pub schedule: Option<String>,
}

/// A duration and how the configuration spelled it (for the reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The duration.
    pub duration: Duration,
    /// As written.
    pub text: String,
}

impl Span {
    fn parse(key: &str, text: &Option<String>) -> Result<Option<Span>, String> {
        text.as_ref()
            .map(|t| {
                let duration = parse_duration(t).map_err(|e| format!("{key}: {e}"))?;
                Ok(Span {
                    duration,
                    text: t.trim().to_owned(),
                })
            })
            .transpose()
    }

    fn secs(&self) -> i64 {
        i64::try_from(self.duration.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A `[[retention]]` rule, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// Repository glob.
    pub repositories: String,
    /// Keep this many most recently pushed tags.
    pub keep_last: Option<usize>,
    /// Keep tags matching these globs.
    pub keep_tags: Vec<String>,
    /// Keep tags pulled within this.
    pub keep_pulled_within: Option<Span>,
    /// Delete manifests untagged longer than this.
    pub delete_untagged_after: Option<Span>,
    /// How often `serve` runs it.
    pub schedule: Option<Duration>,
}

impl RetentionRule {
    /// Check one table.
    pub fn new(c: &RetentionConfig) -> Result<RetentionRule, String> {
        let err = |e: String| format!("[[retention]] repositories = {:?}: {e}", c.repositories);
        if c.repositories.is_empty() {
            return Err(err("repositories must not be empty".to_owned()));
        }
        if c.keep_tags.iter().any(String::is_empty) {
            return Err(err("keep_tags: a glob must not be empty".to_owned()));
        }
        let schedule = Span::parse("schedule", &c.schedule).map_err(err)?;
        if schedule.as_ref().is_some_and(|s| s.duration.is_zero()) {
            return Err(err("schedule must be longer than 0s".to_owned()));
        }
        Ok(RetentionRule {
            repositories: c.repositories.clone(),
            keep_last: c.keep_last,
            keep_tags: c.keep_tags.clone(),
            keep_pulled_within: Span::parse("keep_pulled_within", &c.keep_pulled_within)
                .map_err(err)?,
            delete_untagged_after: Span::parse("delete_untagged_after", &c.delete_untagged_after)
                .map_err(err)?,
            schedule: schedule.map(|s| s.duration),
        })
    }

    /// Check every table.
    pub fn all(configs: &[RetentionConfig]) -> Result<Vec<RetentionRule>, String> {
        configs.iter().map(RetentionRule::new).collect()
    }

    /// Whether the rule covers `repo`.
    pub fn covers(&self, repo: &str) -> bool {
        glob_match(&self.repositories, repo)
    }

    /// Whether tags are judged at all (some keep rule is set).
    fn judges_tags(&self) -> bool {
        self.keep_last.is_some() || !self.keep_tags.is_empty() || self.keep_pulled_within.is_some()
    }

    /// How the rule is named in reasons.
    pub fn label(&self) -> String {
        format!("[[retention]] repositories = {:?}", self.repositories)
    }
}

/// The first rule covering `repo` (the one that judges it), by index.
pub fn rule_for(rules: &[RetentionRule], repo: &str) -> Option<usize> {
    rules.iter().position(|r| r.covers(repo))
}

/// What goes from one repository, and why, in the order to delete it:
/// tags first, then manifests, an index before the manifests it lists.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Tags to delete, each with its reason.
    pub tags: Vec<(TagFact, String)>,
    /// Manifests to delete, each with its reason.
    pub manifests: Vec<(ManifestFact, String)>,
}

/// `90061` seconds as `1d 1h`: the two largest units.
pub fn age(secs: i64) -> String {
    let secs = secs.max(0);
    let units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (name, size) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 || (!parts.is_empty() && rest == 0) {
            break;
        }
    }
    parts.join(" ")
}

/// Judge one repository at time `now` (seconds since the epoch);
/// `immutable` says whether a tag is covered by an `[[immutable]]` rule.
pub fn judge(
    rule: &RetentionRule,
    facts: &RetentionFacts,
    now: i64,
    immutable: &dyn Fn(&str) -> bool,
) -> Verdict {
    let mut verdict = Verdict::default();
    let pulled: HashMap<&Digest, i64> = facts
        .manifests
        .iter()
        .filter_map(|m| m.pulled_at.map(|at| (&m.digest, at)))
        .collect();
    // Most recently pushed first; the name breaks ties, so a run is repeatable.
    let mut order: Vec<&TagFact> = facts.tags.iter().collect();
    order.sort_by(|a, b| (b.pushed_at, b.name.as_str()).cmp(&(a.pushed_at, a.name.as_str())));
    let mut tagged_after: HashSet<&Digest> = HashSet::new();
    for (rank, tag) in order.iter().enumerate() {
        let name = tag.name.as_str();
        let kept = !rule.judges_tags()
            || immutable(name)
            || rule.keep_last.is_some_and(|n| rank < n)
            || rule.keep_tags.iter().any(|g| glob_match(g, name))
            || rule.keep_pulled_within.as_ref().is_some_and(|w| {
                pulled
                    .get(&tag.digest)
                    .is_some_and(|&at| at >= now.saturating_sub(w.secs()))
            });
        if kept {
            tagged_after.insert(&tag.digest);
            continue;
        }
        let mut why = Vec::new();
        if let Some(n) = rule.keep_last {
            why.push(format!("not in the last {n} pushed"));
        }
        if !rule.keep_tags.is_empty() {
            why.push(format!("matches none of keep_tags {:?}", rule.keep_tags));
        }
        if let Some(w) = &rule.keep_pulled_within {
            why.push(match pulled.get(&tag.digest) {
                Some(&at) => format!("not pulled within {} (last {} ago)", w.text, age(now - at)),
                None => format!("not pulled within {} (no pull recorded)", w.text),
            });
        }
        verdict.tags.push(((*tag).clone(), why.join(", ")));
    }
    let Some(after) = &rule.delete_untagged_after else {
        return verdict;
    };
    let cutoff = now.saturating_sub(after.secs());
    let tagged_before: HashSet<&Digest> = facts.tags.iter().map(|t| &t.digest).collect();
    let mut parents: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for (index, child) in &facts.links {
        parents.entry(child).or_default().push(index);
    }
    let mut alive: HashSet<&Digest> = facts.manifests.iter().map(|m| &m.digest).collect();
    // Until nothing more goes: an index that goes may free what it lists,
    // a subject that goes frees its referrers.
    loop {
        let mut changed = false;
        for m in &facts.manifests {
            if !alive.contains(&m.digest) || tagged_after.contains(&m.digest) {
                continue;
            }
            // A tag deleted in this pass untags its manifest now.
            let since = if tagged_before.contains(&m.digest) {
                now
            } else {
                m.untagged_since
            };
            let my_parents = parents.get(&m.digest).map_or(&[][..], Vec::as_slice);
            let index_kept = my_parents.iter().any(|p| alive.contains(*p));
            let subject_kept = m.subject.as_ref().is_some_and(|s| alive.contains(s));
            if since >= cutoff || index_kept || subject_kept {
                continue;
            }
            let mut why = format!(
                "untagged for {} (over delete_untagged_after = {})",
                age(now - since),
                after.text
            );
            if !my_parents.is_empty() {
                why.push_str(", the index listing it goes first");
            }
            if m.subject.as_ref().is_some_and(|s| is_manifest(facts, s)) {
                why.push_str(", its subject goes first");
            }
            alive.remove(&m.digest);
            verdict.manifests.push((m.clone(), why));
            changed = true;
        }
        if !changed {
            return verdict;
        }
    }
}

/// Whether `digest` is a manifest of the repository (so a referrer of it
/// is freed only by its going).
fn is_manifest(facts: &RetentionFacts, digest: &Digest) -> bool {
    facts.manifests.iter().any(|m| &m.digest == digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn d(n: u8) -> Digest {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap()
    }

    fn rule(text: &str) -> RetentionRule {
        let c: RetentionConfig =
            toml::from_str(&format!("repositories = \"ci/**\"\n{text}")).unwrap();
        RetentionRule::new(&c).unwrap()
    }

    fn tag(name: &str, digest: u8, pushed_at: i64) -> TagFact {
        TagFact {
            name: name.parse().unwrap(),
            digest: d(digest),
            pushed_at,
        }
    }

    fn manifest(digest: u8, untagged_since: i64, pulled_at: Option<i64>) -> ManifestFact {
        ManifestFact {
            digest: d(digest),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
            subject: None,
            untagged_since,
            pulled_at,
        }
    }

    fn names(v: &Verdict) -> (Vec<&str>, Vec<Digest>) {
        (
            v.tags.iter().map(|(t, _)| t.name.as_str()).collect(),
            v.manifests.iter().map(|(m, _)| m.digest.clone()).collect(),
        )
    }

    fn no_immutable(_: &str) -> bool {
        false
    }

    #[test]
    fn keep_last_and_keep_tags_keep_and_say_why_the_rest_goes() {
        let r = rule("keep_last = 2\nkeep_tags = [\"release-*\"]");
        let facts = RetentionFacts {
            tags: vec![
                tag("build-1", 1, 10),
                tag("build-2", 2, 20),
                tag("build-3", 3, 30),
                tag("release-1", 1, 5),
                tag("build-4", 4, 40),
            ],
            manifests: (1..=4).map(|n| manifest(n, 0, None)).collect(),
            links: vec![],
        };
        let v = judge(&r, &facts, NOW, &no_immutable);
        assert_eq!(names(&v).0, ["build-2", "build-1"]);
        assert_eq!(
            v.tags[0].1,
            "not in the last 2 pushed, matches none of keep_tags [\"release-*\"]"
        );
        // No delete_untagged_after: manifests stay.
        assert!(v.manifests.is_empty());
    }

    #[test]
    fn one_tag_of_a_shared_manifest_goes_and_the_manifest_stays() {
        let r = rule("keep_tags = [\"latest\"]\ndelete_untagged_after = \"1s\"");
        let facts = RetentionFacts {
            tags: vec![tag("old", 1, 10), tag("latest", 1, 10), tag("gone", 2, 10)],
            manifests: vec![manifest(1, 0, None), manifest(2, 0, None)],
            links: vec![],
        };
        let v = judge(&r, &facts, NOW, &no_immutable);
        let (tags, manifests) = names(&v);
        assert_eq!(tags, ["old", "gone"]);
        // Manifest 2 was untagged only now, by this pass: not yet.
        assert!(manifests.is_empty(), "{manifests:?}");
    }

    #[test]
    fn pulls_and_immutable_rules_keep_tags() {
        let r = rule("keep_pulled_within = \"1h\"");
        let facts = RetentionFacts {
            tags: vec![
                tag("a", 1, 0),
                tag("b", 2, 0),
                tag("c", 3, 0),
                tag("v1", 4, 0),
            ],
            manifests: vec![
                manifest(1, 0, Some(NOW - 60)),
                manifest(2, 0, Some(NOW - 7200)),
                manifest(3, 0, None),
                manifest(4, 0, None),
            ],
            links: vec![],
        };
        let v = judge(&r, &facts, NOW, &|t| t.starts_with('v'));
        assert_eq!(names(&v).0, ["c", "b"]);
        assert_eq!(v.tags[1].1, "not pulled within 1h (last 2h ago)");
        assert_eq!(v.tags[0].1, "not pulled within 1h (no pull recorded)");
    }

    #[test]
    fn untagged_manifests_go_after_their_index_and_subject() {
        let r = rule("delete_untagged_after = \"1d\"");
        let mut referrer = manifest(5, 0, None);
        referrer.subject = Some(d(3));
        let mut kept_referrer = manifest(6, 0, None);
        kept_referrer.subject = Some(d(1));
        let facts = RetentionFacts {
            tags: vec![tag("index", 1, 0)],
            manifests: vec![
                manifest(1, 0, None),
                manifest(2, 0, None),
                manifest(3, 0, None),
                manifest(4, NOW - 60, None),
                referrer,
                kept_referrer,
                manifest(7, 0, None),
            ],
            // Index 1 (tagged) lists 2; index 3 (untagged) lists 7.
            links: vec![(d(1), d(2)), (d(3), d(7))],
        };
        let v = judge(&r, &facts, NOW, &no_immutable);
        assert!(v.tags.is_empty(), "no keep rule: tags are not judged");
        let (_, gone) = names(&v);
        // 3 goes, then what it kept (5 its referrer, 7 its child); 4 is too
        // young; 2 and 6 are kept by the tagged index 1.
        assert_eq!(gone, [d(3), d(5), d(7)]);
        assert!(v.manifests[1].1.contains("its subject goes first"));
        assert!(v.manifests[2].1.contains("the index listing it goes first"));
        assert_eq!(
            v.manifests[0].1,
            "untagged for 11d 13h (over delete_untagged_after = 1d)"
        );
    }

    #[test]
    fn rules_are_checked_and_the_first_match_judges() {
        let bad = |t: &str| {
            let c: RetentionConfig = toml::from_str(t).unwrap();
            RetentionRule::new(&c).is_err()
        };
        assert!(bad("repositories = \"\""));
        assert!(bad("repositories = \"a\"\nschedule = \"0s\""));
        assert!(bad("repositories = \"a\"\nkeep_pulled_within = \"3y\""));
        assert!(toml::from_str::<RetentionConfig>("repositories = \"a\"\nkeep = 1").is_err());
        let rules = [rule("keep_last = 1"), {
            let mut r = rule("keep_last = 5");
            r.repositories = "**".into();
            r
        }];
        assert_eq!(rule_for(&rules, "ci/app"), Some(0));
        assert_eq!(rule_for(&rules, "prod/app"), Some(1));
        assert_eq!(age(90061), "1d 1h");
        assert_eq!(age(0), "0s");
        assert_eq!(age(120), "2m");
    }
}
