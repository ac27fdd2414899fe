//! Strata runner: pulls OCI images from a registry, unpacks each layer once
//! into a content-addressed directory, stacks layers with overlayfs and runs
//! the image isolated with namespaces, cgroups, capabilities, `no_new_privs`,
//! seccomp and `pivot_root`.
//!
//! Modules, and which may call which (arrows point down only; a module uses
//! nothing not drawn below it):
//! ```text
//! main.rs (bin)  -> cli, container, image, paths     thin glue; anyhow only here
//! cli            -> container (RunOptions), spec, paths   clap structs -> library types
//! container/     -> image, sandbox, seccomp, cgroup, spec, caps, paths, fsutil
//!                   run (mod.rs), RunOptions, state (records, stale cleanup), bundle
//! sandbox/       -> spec, seccomp (load), cgroup (join), caps, fsutil
//!                   parent side (mod.rs), child side, rootfs, overlay, stdio, init;
//!                   every raw syscall in sandbox/sys.rs
//! spec           -> seccomp (Profile), cgroup (Limits), caps, image::oci, fsutil
//! seccomp/       -> caps, image::{oci, digest}, paths, fsutil
//! cgroup/        -> (devices: the allow-list, v1 rules and the v2 eBPF filter)
//! image/         -> paths     pull, client, auth, store, layers, unpack,
//!                             reference, oci, digest (drawn in image/mod.rs)
//! paths          -> image::digest
//! caps, fsutil, image::digest, image::oci        leaves (types and helpers)
//! ```
//! The sandbox knows nothing about registries or images; [`image::store`] is
//! the only door to stored blobs; [`paths`] is the only place that builds
//! state-root paths. The store runs on threads of its own and must be closed
//! before the sandbox `clone`s (see [`container`]); digests are the store's
//! ([`image::digest`]).
//!
//! Where new parts go: the container lifecycle (create, start, stop, list)
//! in `container/`; networking beyond `none`/`host` in a `network/` module
//! between `container` and `sandbox`; an image builder in a `build/` module
//! above `container` (it runs steps in containers and writes images through
//! `image::store`).
#![deny(missing_docs)]
#![deny(unsafe_code)]

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
#[allow(unsafe_code)]
mod sys;
