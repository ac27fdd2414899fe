//! The registry's integration tests, one binary: the real `registry` binary
//! on a loopback port, driven over HTTP (and raw sockets where a client
//! would misbehave). Each test gets its own temp dir and server process,
//! stopped by a Drop guard.
//!
//! Modules: `harness` (starting a registry, users, shared helpers), `api`
//! (the distribution API: `api::blobs` for blobs and uploads, crashes and
//! memory, `api::manifests` for manifests, listings and malformed requests), `auth` (logins, tokens, rules,
//! TLS), `cli` (the command line: log pipes, SIGTERM, data dirs, the
//! htpasswd prompt, log formats, `--version`), `ops` (GC, fsck, health, metrics, rate limits, slow clients), `policy` (immutable tags, the audit log),
//! `retention` (`[[retention]]`: the command, the schedule, its events),
//! `events` (webhooks: retries, order, signatures, kill -9), `proxy`
//! `events` (webhooks: retries, order, signatures, kill -9), `quota` (budgets,
//! usage, GC), `proxy`
//! (forwarding headers from trusted reverse proxies) and
//! `security` (the regression test of each security finding, performing
//! the attack) and `ui` (the web UI and its JSON API: logins, access rules,
//! CSRF, views, error pages).

mod api;
mod auth;
mod cli;
mod events;
mod harness;
mod mirror;
mod ops;
mod policy;
mod proxy;
mod quota;
mod reload;
mod retention;
mod security;
mod ui;
