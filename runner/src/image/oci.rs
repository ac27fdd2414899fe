//! The subset of the OCI image-spec (and Docker schema 2) documents the runner
//! reads: index, manifest and image config. Descriptors, platforms and the
//! manifest media types are the store crate's (`store::manifest`, one set for
//! the registry and the runner), re-exported here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::image::digest::Digest;
pub use store::manifest::{
    is_index, Descriptor, InvalidPlatform, Platform, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX,
    OCI_MANIFEST,
};

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// The per-platform manifests.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Schema version (2).
    pub schema_version: u32,
    /// Media type, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layer blobs, base first.
    pub layers: Vec<Descriptor>,
}

/// The execution parameters of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// User (`name`, `uid`, `uid:gid`, `name:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment, `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Signal that stops the container (`SIGTERM`, `15`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The health check (Docker's `HEALTHCHECK`; not in the OCI spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// EXPOSEd ports (`"80/tcp": {}`), which `-P` publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Docker's `Healthcheck` of an image config; durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", argv...]`, `["CMD-SHELL", "command"]` or `["NONE"]`.
    #[serde(default)]
    pub test: Vec<String>,
    /// Between checks.
    #[serde(default)]
    pub interval: u64,
    /// Longest a check may take.
    #[serde(default)]
    pub timeout: u64,
    /// Failures before the container is unhealthy.
    #[serde(default)]
    pub retries: u32,
    /// Time after start when failures do not count.
    #[serde(default)]
    pub start_period: u64,
}

/// The root filesystem section of an image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    pub diff_ids: Vec<Digest>,
}

/// An image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Execution parameters.
    #[serde(default)]
    pub config: Option<ExecConfig>,
    /// Layer diff_ids.
    pub rootfs: RootFs,
    /// Anything else, kept as is.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}
