//! The only place object keys are built.
//!
//! ```text
//! <storage root>/
//! ├── blobs/<alg>/<first 2 hex>/<hex>     committed content: layers, configs and manifests
//! ├── quarantine/<alg>/<hex>               blobs `fsck --repair` found corrupt
//! ├── staging/<random>                     manifest bytes on their way to blobs/ (local stores)
//! └── uploads/<upload id>/
//!     ├── part-<part id>                   one appended chunk of an open upload
//!     └── assembled                        the parts joined, awaiting digest verification
//! ```
//!
//! Committed content is immutable and named by its digest, so it is written once
//! and shared by every repository. Everything under `uploads/` is staging debris
//! once its session is gone, and may be deleted; so is a file under `staging/`
//! that no process holds locked.

use object_store::path::Path;

use crate::{Digest, UploadId};

/// Key of a committed blob.
pub fn blob(digest: &Digest) -> Path {
    let hex = digest.hex();
    Path::from(format!(
        "blobs/{}/{}/{}",
        digest.algorithm().name(),
        &hex[..2],
        hex
    ))
}

/// Prefix holding every committed blob.
pub fn blobs_root() -> Path {
    Path::from("blobs")
}

/// Where `fsck --repair` moves a corrupt blob.
pub fn quarantine(digest: &Digest) -> Path {
    Path::from(format!(
        "quarantine/{}/{}",
        digest.algorithm().name(),
        digest.hex()
    ))
}

/// Directory of manifest bytes being written (local stores only: elsewhere a
/// single PUT is atomic).
pub fn staging_root() -> Path {
    Path::from("staging")
}

/// Key of one file under [`staging_root`].
pub fn staging_file(name: &str) -> Path {
    Path::from(format!("staging/{name}"))
}

/// Parse an upload's staging key back into its upload id; `None` for anything else.
pub fn upload_of_key(path: &Path) -> Option<UploadId> {
    let mut parts = path.parts();
    if parts.next()?.as_ref() != "uploads" {
        return None;
    }
    parts.next()?.as_ref().parse().ok()
}

/// Prefix holding every upload's staging objects.
pub fn uploads_root() -> Path {
    Path::from("uploads")
}

/// Prefix of one upload's staging objects.
pub fn upload_dir(id: &UploadId) -> Path {
    Path::from(format!("uploads/{id}"))
}

/// Key of one appended chunk of an upload.
pub fn upload_part(id: &UploadId, part: &str) -> Path {
    Path::from(format!("uploads/{id}/part-{part}"))
}

/// Key of an upload's single data file, appended in place (local stores).
pub fn upload_data(id: &UploadId) -> Path {
    Path::from(format!("uploads/{id}/data"))
}

/// Key of an upload's parts joined together.
pub fn upload_assembled(id: &UploadId) -> Path {
    Path::from(format!("uploads/{id}/assembled"))
}

/// Parse a blob key back into its digest; `None` for anything else.
pub fn digest_of_blob_key(path: &Path) -> Option<Digest> {
    let mut parts = path.parts();
    if parts.next()?.as_ref() != "blobs" {
        return None;
    }
    let alg = parts.next()?;
    let _fanout = parts.next()?;
    let hex = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    format!("{}:{}", alg.as_ref(), hex.as_ref()).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    #[test]
    fn blob_keys_fan_out_by_prefix_and_round_trip() {
        let d = Digest::of(Algorithm::Sha256, b"x");
        let key = blob(&d);
        assert_eq!(
            key.as_ref(),
            format!("blobs/sha256/{}/{}", &d.hex()[..2], d.hex())
        );
        assert_eq!(digest_of_blob_key(&key), Some(d));
        assert_eq!(digest_of_blob_key(&Path::from("uploads/x/part-1")), None);
    }
}
