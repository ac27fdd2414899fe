//! Repository policies from the configuration: immutable tags
//! (`[[immutable]]`) and retention (`[[retention]]`).
//!
//! ```text
//! policy (Policies: the rules, checked by routes before and inside a write)
//!  ├── immutable   [[immutable]]: which tags may never move or go
//!  ├── retention   [[retention]]: the rules, and the verdict on one repository (pure)
//!  └── pruning     a retention pass, its schedule, the batched pull record, counters
//! ```
//! A policy decides; the store enforces inside the write's transaction
//! (through [`store::Effects`]), so a race between two pushes cannot slip
//! past a rule. Uses `auth::glob_match`, `error`, and (retention) the
//! duration parser of `mirror::config`, `events` and `routes::AppState`.

pub mod immutable;
pub mod pruning;
pub mod retention;

pub use immutable::ImmutableRule;

use crate::error::ApiError;

/// Every policy rule of the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    immutable: Vec<ImmutableRule>,
}

impl Policies {
    /// The rules of the configuration, checked.
    pub fn new(immutable: &[ImmutableRule]) -> Result<Policies, String> {
        for rule in immutable {
            rule.validate()?;
        }
        Ok(Policies {
            immutable: immutable.to_vec(),
        })
    }

    /// The first immutability rule covering `tag` of `repo`.
    pub fn immutable_rule(&self, repo: &str, tag: &str) -> Option<&ImmutableRule> {
        self.immutable.iter().find(|r| r.covers(repo, tag))
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
