//! Strata's OCI Distribution v1.1 registry.
//!
//! ```text
//!                  server  (router, middleware, /livez /readyz /metrics, serve loop)
//!                 /   |   \________________________
//!                v    v                            v
//!            routes  conn (connection caps)    metrics, limits, faults
//!          (/v2 handlers by resource, /token)
//!            |    \         \
//!            v     v          v
//!          auth   path, range  mirror/ (pull-through: upstreams, flights, client)
//!  (users, limiter, rules,
//!   tokens, policy)
//!            |
//!            v
//!      error (OCI codes)   config   startup (start-up error)
//!            |               |          |
//!            v               v          v
//!                      store::Store (facade)
//!
//!   log (lossy stderr writer) --> config, metrics      htpasswd (the command)
//!   assets (man pages, completions; uses only clap)
//!   ui/ (the web UI at /ui/: pages, JSON API, sessions) --> auth, metrics, reload,
//!       routes::AppState, store::Store; merged into the router by server
//!   reload (SIGHUP: Live = auth + rate limiter + trusted proxies) --> auth, config,
//!          forwarded, limits, startup; held in routes::AppState, driven by server
//!   policy (immutable tags) --> auth, error      events/ (webhooks: outbox rows,
//!   audit (the audit log, `registry audit`)        CloudEvents, delivery task)
//!          --> auth, error, rfc3339, mirror        --> store, auth, rfc3339, mirror
//!   rfc3339 (UTC timestamps; a leaf)     routes use policy, events, audit; server spawns delivery
//! ```
//! Arrows point at what a module may use; nothing points back up. In words:
//!
//! - [`server`] builds the router and runs it; its middleware parses each
//!   path once ([`routes::ParsedRoute`]), counts it in [`metrics`] and
//!   applies the rate limit of [`limits`]; [`conn`] caps the connections;
//! - [`routes`] holds the handlers, thin calls into [`store::Store`], one
//!   module per resource, with typed success responses;
//! - [`auth`] decides who may do what (htpasswd, tokens, rules) and, in
//!   [`auth::policy`], what one request needs;
//! - [`path`] parses `/v2/...` paths into validated routes; [`range`] parses
//!   `Range` and `Content-Range`;
//! - [`error`] is the one table of OCI error codes, and maps the store's
//!   backend faults onto it; [`faults`] is the low-space reserve and counts
//!   those faults for `/metrics`;
//! - [`mirror`] is the pull-through cache of upstream registries: which
//!   request goes to which upstream, tag TTLs, single flight, the upstream
//!   client; `routes::mirrored` calls it, and it uses only `store` (and its
//!   own `config` table, which [`config`] embeds);
//! - [`config`] is the TOML configuration; [`startup`] is the error of
//!   loading it and starting the server;
//! - [`forwarded`] reads `Forwarded` / `X-Forwarded-*` from trusted
//!   reverse proxies: the client's address and the scheme and host it used;
//!   `server`'s outermost middleware applies it, `routes` builds the realm from it;
//! - [`log`] installs the subscriber whose lines never block serving (the
//!   binary calls it); [`htpasswd`] is the `registry htpasswd` command;
//!   [`assets`] writes the man pages and shell completions of the package;
//! - [`reload`] holds what SIGHUP swaps (users, rules, rate limit, trusted
//!   proxies; the TLS certificate) and does the all-or-nothing reload.
//!
//! `conn`, `forwarded`, `htpasswd`, `limits`, `metrics` and `range` use no other module
//! of the crate; `log` uses `config` and `metrics`; `path`
//! uses only `error`; `config` only `startup`; `reload` uses `auth`, `config`,
//! `forwarded`, `limits` and `startup`; `auth` uses `config`,
//! `limits`, `startup`, and for `policy` `path` and `error`; `faults` uses `error`; `routes` uses
//! `auth`, `path`, `range`, `error`, `faults`, `limits`, `metrics`, `mirror` and `reload`; only
//! `server` uses `routes` and `conn`.
#![deny(missing_docs)]

pub mod assets;
pub mod audit;
pub mod auth;
pub mod config;
pub mod conn;
pub mod error;
pub mod events;
pub mod faults;
pub mod forwarded;
pub mod htpasswd;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod mirror;
pub mod path;
pub mod policy;
pub mod range;
pub mod reload;
pub mod rfc3339;
pub mod routes;
pub mod server;
pub mod startup;
pub mod ui;
pub mod units;
