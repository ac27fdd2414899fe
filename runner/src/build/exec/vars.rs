//! Variables in a stage: the build args (`--build-arg`), the predefined
//! platform args, and `$name` expansion, where ENV wins over ARG.

use super::super::config as cfg;
use super::super::expand;
use super::super::parse::Instruction;
use super::super::Error;
use super::{platform_string, Builder, State};
use crate::image::oci::Platform;

impl Builder<'_> {
    pub(super) fn build_arg(&self, name: &str) -> Option<String> {
        self.opts
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    pub(super) fn platform_args(&self) -> Vec<(String, Option<String>)> {
        let t = &self.platform;
        let h = Platform::host();
        vec![
            ("TARGETPLATFORM".into(), Some(platform_string(t))),
            ("TARGETOS".into(), Some(t.os.clone())),
            ("TARGETARCH".into(), Some(t.architecture.clone())),
            (
                "TARGETVARIANT".into(),
                Some(t.variant.clone().unwrap_or_default()),
            ),
            ("BUILDPLATFORM".into(), Some(platform_string(&h))),
            ("BUILDOS".into(), Some(h.os.clone())),
            ("BUILDARCH".into(), Some(h.architecture.clone())),
            (
                "BUILDVARIANT".into(),
                Some(h.variant.clone().unwrap_or_default()),
            ),
        ]
    }

    pub(super) fn expand_with(
        &self,
        text: &str,
        vars: &[(String, Option<String>)],
        i: &Instruction,
    ) -> Result<String, Error> {
        let lookup = |n: &str| lookup(vars, n);
        expand::word(text, self.escape, &lookup).map_err(|e| self.err(i, e.to_string()))
    }

    /// What `$name` means in a stage: ENV wins over ARG.
    pub(super) fn vars(&self, s: &State) -> Vec<(String, Option<String>)> {
        let mut v: Vec<(String, Option<String>)> = s.args.clone();
        v.extend(
            cfg::env(&s.image)
                .into_iter()
                .map(|(k, val)| (k, Some(val))),
        );
        v
    }

    pub(super) fn word(&self, text: &str, s: &State, i: &Instruction) -> Result<String, Error> {
        self.expand_with(text, &self.vars(s), i)
    }

    pub(super) fn words(
        &self,
        text: &str,
        s: &State,
        i: &Instruction,
    ) -> Result<Vec<String>, Error> {
        let vars = self.vars(s);
        let lookup = |n: &str| lookup(&vars, n);
        expand::words(text, self.escape, &lookup).map_err(|e| self.err(i, e.to_string()))
    }
}

/// The value of `name` in `vars` (the last one set wins).
fn lookup(vars: &[(String, Option<String>)], name: &str) -> Option<String> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}
