//! Manifest parsing and validation.
//!
//! Accepts OCI image manifests and indexes, Docker schema 2 manifests and
//! manifest lists (artifacts are image manifests or indexes with an
//! `artifactType`). Validation checks the structure the store relies on; it
//! never rewrites the bytes, which are stored exactly as pushed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Digest, Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer media type.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Prefix of the OCI non-distributable layer media types.
pub const OCI_NONDISTRIBUTABLE_LAYER_PREFIX: &str =
    "application/vnd.oci.image.layer.nondistributable.";
/// Docker foreign (non-distributable) layer media type.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Whether a media type names an index (a list of manifests) rather than an image.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// What a referenced descriptor points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A blob (config or layer) that must exist in the repository.
    Blob,
    /// A blob the spec allows to be absent (non-distributable layers).
    ForeignBlob,
    /// A child manifest of an index.
    Manifest,
}

/// A descriptor as it appears in manifests and in the referrers response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Artifact type, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Platform, in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor with only the three required fields set.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            annotations: None,
            platform: None,
        }
    }
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant]")]
pub struct InvalidPlatform(pub String);

/// A platform (`os/arch[/variant]`), as in an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's naming, e.g. `amd64`.
    pub architecture: String,
    /// Optional variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process executes on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: (architecture == "arm64").then(|| "v8".to_owned()),
        }
    }

    /// Whether an index entry for `other` can serve a request for `self`
    /// (a variant missing on either side matches any).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = InvalidPlatform;

    fn from_str(s: &str) -> std::result::Result<Self, InvalidPlatform> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(InvalidPlatform(s.to_owned()));
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the store keeps about a parsed manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The media type, from the body or the Content-Type.
    pub media_type: String,
    /// The artifact type shown in the referrers API.
    pub artifact_type: Option<String>,
    /// The subject this manifest refers to, if any.
    pub subject: Option<Digest>,
    /// Annotations, as JSON text.
    pub annotations: Option<String>,
    /// Everything this manifest references, with the size its descriptor declares.
    pub refs: Vec<(Digest, RefKind, u64)>,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::ManifestInvalid {
        reason: reason.into(),
    }
}

fn is_foreign_layer(media_type: &str) -> bool {
    media_type.starts_with(OCI_NONDISTRIBUTABLE_LAYER_PREFIX) || media_type == DOCKER_FOREIGN_LAYER
}

/// Parse and validate manifest bytes pushed with the given Content-Type.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<ParsedManifest> {
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let content_type = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .filter(|ct| !ct.is_empty());
    let media_type = match (content_type, raw.media_type.as_deref()) {
        (Some(ct), Some(mt)) if ct != mt => {
            return Err(invalid(format!(
                "Content-Type {ct} does not match the manifest's mediaType {mt}"
            )))
        }
        (Some(ct), _) => ct.to_owned(),
        (None, Some(mt)) => mt.to_owned(),
        (None, None) => return Err(invalid("no Content-Type and no mediaType")),
    };
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let mut refs = Vec::new();
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = raw
                .config
                .as_ref()
                .ok_or_else(|| invalid("missing config"))?;
            let layers = raw
                .layers
                .as_ref()
                .ok_or_else(|| invalid("missing layers"))?;
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest has no manifests field"));
            }
            refs.push((config.digest.clone(), RefKind::Blob, config.size));
            for layer in layers {
                let kind = if is_foreign_layer(&layer.media_type) {
                    RefKind::ForeignBlob
                } else {
                    RefKind::Blob
                };
                refs.push((layer.digest.clone(), kind, layer.size));
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let manifests = raw
                .manifests
                .as_ref()
                .ok_or_else(|| invalid("missing manifests"))?;
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index has no config or layers"));
            }
            for m in manifests {
                refs.push((m.digest.clone(), RefKind::Manifest, m.size));
            }
        }
        other => {
            return Err(invalid(format!("unsupported manifest media type {other}")));
        }
    }
    let artifact_type = raw
        .artifact_type
        .clone()
        .or_else(|| raw.config.as_ref().map(|c| c.media_type.clone()));
    let annotations = raw
        .annotations
        .as_ref()
        .map(|a| serde_json::to_string(a).expect("a JSON map serializes"));
    Ok(ParsedManifest {
        media_type,
        artifact_type,
        subject: raw.subject.map(|s| s.digest),
        annotations,
        refs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_an_image_with_subject_and_artifact_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-sig",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/x","digest":"{}","size":3}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}},
            "annotations":{{"a":"b"}}}}"#,
            digest('a'),
            digest('b'),
            digest('c')
        );
        let m = parse(Some(OCI_MANIFEST), body.as_bytes()).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.subject.unwrap().to_string(), digest('c'));
        assert_eq!(m.refs.len(), 2);
        assert_eq!(m.annotations.as_deref(), Some(r#"{"a":"b"}"#));
    }

    #[test]
    fn rejects_mismatched_content_type() {
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(parse(Some(OCI_MANIFEST), body.as_bytes()).is_err());
        assert!(parse(Some(OCI_INDEX), body.as_bytes()).is_ok());
        assert!(parse(None, body.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_bad_structure() {
        for body in [
            "not json",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"layers":[]}"#,
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#,
        ] {
            assert!(
                parse(Some(OCI_MANIFEST), body.as_bytes()).is_err(),
                "{body}"
            );
        }
        assert!(parse(Some("text/plain"), br#"{"schemaVersion":2}"#).is_err());
    }

    #[test]
    fn platform_round_trip_and_variant_match() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let plain: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches(&plain));
        assert!(!p.matches(&"linux/amd64".parse().unwrap()));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
    }

    #[test]
    fn index_entry_platform_is_read_and_written_back() {
        let text = format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}}"#,
            digest('d')
        );
        let d: Descriptor = serde_json::from_str(&text).unwrap();
        assert_eq!(d.platform.as_ref().unwrap().to_string(), "linux/amd64");
        assert_eq!(serde_json::to_string(&d).unwrap(), text);
        let bare = Descriptor::new(OCI_CONFIG, d.digest.clone(), 2);
        assert!(!serde_json::to_string(&bare).unwrap().contains("platform"));
    }
}
