//! `[[immutable]]`: tags that, once pushed, can be neither overwritten with
//! another manifest, nor deleted, nor lose their manifest to a delete by
//! digest. Pushing the identical manifest again is allowed (CI re-runs).

use serde::Deserialize;

use crate::auth::glob_match;
use crate::error::{ApiError, Code};

/// One `[[immutable]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository glob: `*` within one path segment, `**` across them.
    pub repositories: String,
    /// Tag glob (`*` matches any run of characters).
    pub tags: String,
}

impl ImmutableRule {
    /// Refuse empty globs (a typo that would match nothing, or everything).
    pub fn validate(&self) -> Result<(), String> {
        if self.repositories.is_empty() || self.tags.is_empty() {
            return Err("[[immutable]]: repositories and tags must not be empty".to_owned());
        }
        Ok(())
    }

    /// Whether the rule covers some tag of `repo`.
    pub fn covers_repo(&self, repo: &str) -> bool {
        glob_match(&self.repositories, repo)
    }

    /// Whether the rule covers `tag` of `repo` (tags hold no `/`, so `*`
    /// and `**` both match any run of characters there).
    pub fn covers(&self, repo: &str, tag: &str) -> bool {
        self.covers_repo(repo) && glob_match(&self.tags, tag)
    }

    /// `DENIED`, naming this rule, for a write that would change `tag`.
    pub fn refusal(&self, repo: &str, tag: &str, digest: &str) -> ApiError {
        ApiError::new(Code::Denied)
            .message(format!(
                "tag {repo}:{tag} is immutable ([[immutable]] repositories = {:?}, tags = {:?})",
                self.repositories, self.tags
            ))
            .detail(format!(
                "{repo}:{tag} points to {digest}; it cannot be overwritten with another manifest or deleted"
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repositories: &str, tags: &str) -> ImmutableRule {
        ImmutableRule {
            repositories: repositories.to_owned(),
            tags: tags.to_owned(),
        }
    }

    #[test]
    fn globs_cover_segments_and_tags() {
        let r = rule("prod/**", "v*");
        assert!(r.covers("prod/app", "v1.2"));
        assert!(r.covers("prod/team/app", "v1"));
        assert!(!r.covers("prod/app", "latest"));
        assert!(!r.covers("staging/app", "v1"));
        let one = rule("prod/*", "release-*");
        assert!(one.covers("prod/app", "release-1"));
        assert!(!one.covers("prod/team/app", "release-1"));
    }
}
