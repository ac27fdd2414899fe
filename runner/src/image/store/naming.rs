//! How runner images map onto the store, in both directions:
//! - each image repository is one store repository named
//!   `<registry>/<repository>`, the registry host lowercased and a `:port`
//!   written `__port` (`localhost:5000/library/app` ->
//!   `localhost__5000/library/app`); hosts never contain `_`, so the name maps
//!   back;
//! - the platform manifest is stored in that repository under the reference's
//!   tag; a reference pinned by a sha256 digest is stored under the tag
//!   `sha256-<hex>` instead, because the pinned digest may be an index's while
//!   the store keeps the platform manifest it resolved to;
//! - blobs downloaded before their image is recorded go into the repository
//!   [`PULLING`] (a name no image reference maps to) and are mounted into the
//!   image's repository, without a copy, when the image is recorded;
//! - content is stored once whatever the number of images using it; a blob no
//!   manifest references is swept by
//!   [`ImageStore::remove_unused_blobs`](super::ImageStore::remove_unused_blobs).

use store::{RepoName, Tag};

use super::{Error, Result};
use crate::image::digest::{Algorithm, Digest};
use crate::image::reference::Reference;

/// Store repository holding blobs whose image is not recorded yet.
pub const PULLING: &str = "runner/pulling";

pub(super) fn pulling() -> RepoName {
    PULLING.parse().expect("PULLING is a valid repository name")
}

/// Where an image reference lives in the store: its repository and tag.
pub(super) fn locate(reference: &Reference) -> Result<(RepoName, Tag)> {
    let unstorable = |reason: String| Error::Unstorable {
        reference: reference.to_string(),
        reason,
    };
    if reference.registry.contains('_') {
        return Err(unstorable("registry host contains '_'".into()));
    }
    let host = reference.registry.to_ascii_lowercase().replace(':', "__");
    let repo = format!("{host}/{}", reference.repository)
        .parse()
        .map_err(|e| unstorable(format!("{e}")))?;
    let tag = match (&reference.digest, &reference.tag) {
        (Some(d), _) if d.algorithm() == Algorithm::Sha256 => format!("sha256-{}", d.hex()),
        (Some(_), _) => return Err(unstorable("only sha256 digests can be pinned".into())),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_owned(),
    };
    let tag = tag.parse().map_err(|e| unstorable(format!("{e}")))?;
    Ok((repo, tag))
}

/// The image reference stored as `tag` in `repo` (the inverse of [`locate`]).
pub(super) fn reference_of(repo: &str, tag: &str) -> Option<Reference> {
    let (host, repository) = repo.split_once('/')?;
    let host = host.replace("__", ":");
    let pinned = tag
        .strip_prefix("sha256-")
        .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
    let text = match pinned {
        Some(d) => format!("{host}/{repository}@{d}"),
        None => format!("{host}/{repository}:{tag}"),
    };
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_without_a_place_in_the_store_are_refused() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let reference: Reference = format!("example.com/a@{sha512}").parse().unwrap();
        assert!(matches!(locate(&reference), Err(Error::Unstorable { .. })));
        // Docker's grammar has no `_` in hosts; the parser refuses them first.
        assert!("my_host:5000/a:1".parse::<Reference>().is_err());
        assert_eq!(
            reference_of("localhost__5000/library/app", "1.0")
                .unwrap()
                .to_string(),
            "localhost:5000/library/app:1.0"
        );
    }
}
