//! The access rules of the config, compiled: what a caller may do on a
//! repository (by user, group or anonymity, with globs on names), and the
//! check of one action, narrowed by a token's grants.

use super::{Action, Actions, Auth, Caller, Refusal, Verified, NARROW_TOKEN};
use crate::config::Rule;

/// A rule with its actions parsed.
pub(super) struct CompiledRule {
    repositories: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    anonymous: bool,
    actions: Actions,
}

/// Compile the config's rules; with none, every htpasswd user may do everything.
pub(super) fn compile(rules: &[Rule]) -> Vec<CompiledRule> {
    let mut compiled: Vec<CompiledRule> = rules
        .iter()
        .map(|r| CompiledRule {
            repositories: r.repositories.clone(),
            users: r.users.clone(),
            groups: r.groups.clone(),
            anonymous: r.anonymous,
            actions: Actions::parse(r.actions.iter().map(String::as_str)),
        })
        .collect();
    if compiled.is_empty() {
        compiled.push(CompiledRule {
            repositories: vec!["**".to_owned()],
            users: vec!["*".to_owned()],
            groups: Vec::new(),
            anonymous: false,
            actions: Actions::ALL,
        });
    }
    compiled
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

impl Auth {
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
}
