//! Strata runner: pulls OCI images from a registry, unpacks each layer once
//! into a content-addressed directory, stacks layers with overlayfs and runs
//! the image isolated with namespaces, cgroups, capabilities, `no_new_privs`,
//! seccomp and `pivot_root`.
//!
//! Modules, and which may call which (arrows point down only; a module uses
//! nothing not drawn below it). `[name]` marks a part to come, at its place:
//! ```text
//! main.rs (bin)  -> cli, container, network, image, info, paths, rootless   thin glue;
//!                   anyhow only here
//! info           -> cgroup, image::auth, paths, rootless   `runner info`: host features, logins
//! cli            -> container (RunOptions, detached, exec, logs), build, network
//!                   (Request), spec, paths,
//!                   image::client (Settings)   clap structs -> library types
//!                   (cli/containers: the container commands' flags; cli/build:
//!                   `build` and `builder` flags -> build::BuildOptions; cli/network:
//!                   `network`, `port`, and --network/-p/-P -> the run's mode)
//! build/         -> container, sandbox, seccomp, cgroup, image, spec, paths, sys
//!                   `runner build`: Dockerfile parser and expansion, stages, the
//!                   step cache, COPY/ADD layers, RUN through the sandbox, the
//!                   snapshot of its upper dir, the image into image::store
//!                   (drawn in build/mod.rs)
//! container/     -> image, sandbox, network, seccomp, cgroup, spec, caps, paths,
//!                   fsutil, sys   run (mod.rs), RunOptions, state (the record,
//!                   stale cleanup), records (locks, lookups), bundle; detached
//!                   (`run -d`: config, monitor start), monitor (the per-container
//!                   process), logs, health, control (stop/kill/wait/start/rm),
//!                   exec, view (ps, inspect), clock
//! network/       -> paths, fsutil, sys   `--network bridge`, `-p`, `runner network`:
//!                   networks and leases (locked file), bridge and veth over
//!                   rtnetlink, nft rules, hosts entries; container attaches
//!                   before the sandbox clones and hands it a hook that plumbs
//!                   the child's new namespace (sandbox never calls network)
//! sandbox/       -> spec, seccomp (load), cgroup (join), caps, fsutil, sys
//!                   parent side (mod.rs), child side, exec (joins a running
//!                   container), reap (kills what a timed-out exec started),
//!                   rootfs, overlay, stdio, init
//! spec/          -> seccomp (Profile), cgroup (Limits), lsm, caps, image::oci, fsutil
//!                   ContainerSpec: what container hands sandbox (and bundle);
//!                   user: `-u` against the image's passwd and group
//! seccomp/       -> caps, image::{oci, digest}, paths, fsutil, sys
//! lsm            -> (nothing) AppArmor profile and SELinux label, where the
//!                   host has them; applied by sandbox at exec
//! cgroup/        -> rootless (active), sys   v1 and v2 managers; devices (allow-list,
//!                   eBPF); rootless (a delegated v2 subtree, or none: Unenforced)
//! image/         -> paths, rootless (active), sys    pull, client, auth, store, layers, unpack,
//!                                 reference, oci, digest (drawn in image/mod.rs)
//! paths          -> image::digest
//! rootless/      -> sys           rootless mode: detection, XDG paths, /etc/subuid,
//!                   the user's shared user namespace (pause process, newuidmap)
//! caps           -> sys
//! fsutil, image::digest, image::oci   leaves (types and helpers)
//! assets         leaf (clap only): man pages and completions for the package
//! sys/           leaf: every unsafe call of the crate, as safe wrappers
//!                (proc, fd, mount, fs, caps, bpf, term, net, mem, watch)
//! ```
//! The sandbox knows nothing about registries or images; [`image::store`] is
//! the only door to stored blobs; [`paths`] is the only place that builds
//! state-root paths; `sys` is the only module allowed `unsafe` (the crate
//! denies `unsafe_code`), and it holds no policy. The store runs on threads
//! of its own and must be closed before the sandbox `clone`s (see
//! [`container`]); digests are the store's ([`image::digest`]).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod assets;
pub mod build;
pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod container;
pub mod fsutil;
pub mod image;
pub mod info;
pub mod lsm;
pub mod network;
pub mod paths;
pub mod rootless;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
#[allow(unsafe_code)]
mod sys;

/// The runner's version and the git commit it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRATA_GIT_COMMIT"),
    ")"
);
