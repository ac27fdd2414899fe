//! End-to-end tests of the `runner` binary against a real registry and the
//! real kernel. They need root, the registry binary (STRATA_REGISTRY_BIN),
//! Debian's busybox-static, gcc with static glibc, and runc for the bundle test.
//!
//! Each test gets its own temp dir, its own registry process and its own
//! runner state root. Registries are stopped, and any leftover cgroup removed,
//! by Drop guards, so a failing test cleans up too.
//!
//! Modules: `harness` (shared set-up), `lifecycle`, `containers` (`run -d`,
//! the monitor and the commands on containers that live on), `containers_life`
//! (timeouts that kill what they started, log rotation, a simulated host
//! crash, exec into a foreground run), `isolation`, `images`,
//! `usability` (errors, TLS, interruptions: what a new user meets),
//! `network` (bridge, ports, user networks: each inside a netns of its own),
//! and the security regression tests, one per attack: `security_container`
//! (what a hostile image or container process tries), `landlock` (a leaked
//! host descriptor, with and without Landlock) and `security_host` (what a
//! hostile local user or host misconfiguration allows).

mod build;
mod build_add;
mod build_copy;
mod build_git;
mod build_memory;
mod build_mount;
mod containers;
mod containers_life;
mod harness;
mod images;
mod isolation;
mod landlock;
mod lifecycle;
mod network;
mod security_container;
mod security_host;
mod usability;
