//! Seccomp profiles in Docker's JSON format: the types, reading a profile
//! file, and resolving a profile's capability and architecture conditions
//! for one container ([`Profile::effective_rules`]).

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::caps::Capability;

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Action for syscalls no rule matches.
    pub default_action: String,
    /// errno for an `SCMP_ACT_ERRNO` default action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// One rule of a profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Syscall names.
    pub names: Vec<String>,
    /// Action when the rule matches.
    pub action: String,
    /// errno for `SCMP_ACT_ERRNO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// The rule applies only if these hold.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub includes: Filter,
    /// The rule applies only if these do not hold.
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub excludes: Filter,
}

/// Conditions on capabilities and architectures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    /// Architectures in Go naming (`amd64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty()
    }
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument index.
    pub index: u32,
    /// Value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// Second value (the datum for `SCMP_CMP_MASKED_EQ`).
    #[serde(default)]
    pub value_two: u64,
    /// Operator (`SCMP_CMP_EQ`...).
    pub op: String,
}

impl Profile {
    /// Reads a profile file in Docker's format.
    pub fn load(path: &Path) -> Result<Profile> {
        let bytes = fs::read(path).map_err(|e| Error::Profile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Profile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The rules that apply to a container holding `caps` on this architecture,
    /// with includes/excludes resolved away.
    pub fn effective_rules(&self, caps: &[Capability]) -> Vec<Rule> {
        let arch = crate::image::oci::Platform::host().architecture;
        let has_cap = |c: &String| caps.iter().any(|k| k.to_string().eq_ignore_ascii_case(c));
        let has_arch = |a: &String| *a == arch || (arch == "amd64" && (a == "x86" || a == "x32"));
        self.syscalls
            .iter()
            .filter(|r| {
                r.includes.caps.iter().all(has_cap)
                    && (r.includes.arches.is_empty() || r.includes.arches.iter().any(has_arch))
                    && (r.excludes.caps.is_empty() || !r.excludes.caps.iter().any(has_cap))
                    && !r.excludes.arches.contains(&arch)
            })
            .map(|r| Rule {
                includes: Filter::default(),
                excludes: Filter::default(),
                ..r.clone()
            })
            .collect()
    }
}
