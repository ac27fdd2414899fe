//! Repository policies from the configuration: immutable tags
//! (`[[immutable]]`), retention (`[[retention]]`) and quotas (`[[quota]]`).
//!
//! ```text
//! policy (Policies: the rules, checked by routes before and inside a write)
//!  ├── immutable   [[immutable]]: which tags may never move or go
//!  ├── retention   [[retention]]: the rules, and the verdict on one repository (pure)
//!  ├── pruning     a retention pass, its schedule, the batched pull record, counters
//!  └── quota       [[quota]]: byte budgets, handed to the store as store::Quota
//! ```
//! A policy decides; the store enforces inside the write's transaction
//! (through [`store::Effects`] and [`store::Store::set_quotas`]), so a race
//! between two pushes cannot slip past a rule. Uses `auth::glob_match`,
//! `error`, `units`, `events` (quota warnings, retention events), and for
//! retention the duration parser of `mirror::config` and `routes::AppState`.

pub mod immutable;
pub mod pruning;
pub mod quota;
pub mod retention;

pub use immutable::ImmutableRule;
pub use quota::{Quota, QuotaRule};

use crate::error::ApiError;

/// Every policy rule of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    immutable: Vec<ImmutableRule>,
    quotas: Vec<Quota>,
}

impl Policies {
    /// The rules of the configuration, checked.
    pub fn new(immutable: &[ImmutableRule], quotas: &[QuotaRule]) -> Result<Policies, String> {
        for rule in immutable {
            rule.validate()?;
        }
        Ok(Policies {
            immutable: immutable.to_vec(),
            quotas: quotas
                .iter()
                .map(Quota::from_rule)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The quotas, in configuration order.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// The quotas in the store's form, emitting `quota_warning` through `events`.
    pub fn store_quotas(&self, events: &crate::events::Events) -> Vec<store::Quota> {
        self.quotas.iter().map(|q| q.for_store(events)).collect()
    }

    /// The first immutability rule covering `tag` of `repo`.
    pub fn immutable_rule(&self, repo: &str, tag: &str) -> Option<&ImmutableRule> {
        self.immutable.iter().find(|r| r.covers(repo, tag))
    }

    /// The store's test of which tags of `repo` may not move or go
    /// ([`store::Effects::locked`]); `None` when no rule covers `repo`.
    pub fn tag_lock<'a>(
        &'a self,
        repo: &'a str,
    ) -> Option<impl Fn(&store::Tag) -> bool + Sync + 'a> {
        self.has_immutable(repo)
            .then_some(move |t: &store::Tag| self.immutable_rule(repo, t.as_str()).is_some())
    }

    /// Whether any immutability rule covers some tag of `repo`.
    pub fn has_immutable(&self, repo: &str) -> bool {
        self.immutable.iter().any(|r| r.covers_repo(repo))
    }

    /// The API's answer to a store error: `DENIED` naming the rule for a
    /// locked tag, the usual mapping otherwise.
    pub fn refusal(&self, repo: &str, e: store::Error) -> ApiError {
        match &e {
            store::Error::TagLocked { tag, digest } => match self.immutable_rule(repo, tag) {
                Some(rule) => rule.refusal(repo, tag, digest),
                None => ApiError::from(e),
            },
            _ => ApiError::from(e),
        }
    }
}
