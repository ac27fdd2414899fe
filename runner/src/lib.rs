//! Strata runner: pulls OCI images from a registry, unpacks each layer once
//! into a content-addressed directory, stacks layers with overlayfs and runs
//! the image isolated with namespaces, cgroups, capabilities, `no_new_privs`,
//! seccomp and `pivot_root`.
//!
//! Layers (arrows point down only):
//! ```text
//! cli / main.rs -> container (run), bundle, pull
//! pull          -> client (HTTP), images (local store)
//! images        -> store (the shared crate: blobs, SQLite metadata)
//! container     -> unpack, seccomp, cgroup, state, sandbox
//! cgroup        -> devices (v1 rules, v2 eBPF filter)
//! sandbox       -> caps, seccomp (load), cgroup (join), spec
//! ```
//! The sandbox knows nothing about registries; `images` is the only door to
//! stored blobs; `paths` is the only place that builds state-root paths.
//! The store runs on threads of its own and must be closed before the sandbox
//! `clone`s (see [`container`]); digests are the store's ([`digest`]).
#![deny(missing_docs)]

pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod fsutil;
pub mod image;
pub mod paths;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
