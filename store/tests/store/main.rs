//! The store's integration tests, one binary:
//!
//! - `contract`: the public `Store` API, on local files + SQLite always and on
//!   S3 + PostgreSQL when run with `--ignored` and the environment naming them
//!   (conformance/scaleout.sh does);
//! - `local_uploads`, `debris`: the local backend's own paths (in-place data
//!   files, staging files, crash debris);
//! - `tag_cache`: the per-process tag-list cache against another process's
//!   changes;
//! - `outbox`: the webhook outbox's contract cases (claims, leases, order,
//!   rows committed with their write), run by `contract` on both backends;
//! - `retention`: the store's side of `[[retention]]` (facts, deletes that
//!   re-check, manifest pulls, the lock), run by `contract` on both backends;
//! - `quota`: quotas' contract cases (budgets, dedup, warnings, usage
//!   after GC, concurrent writers), run by `contract` on both backends;
//! - `staging`: a local client's staging repository (small blobs, manifests
//!   that move their staged blobs in, deletes that unlink), run by
//!   `contract` on both backends;
//! - `harness`: backends and helpers they share.

mod contract;
mod debris;
mod harness;
mod local_uploads;
mod outbox;
mod quota;
mod retention;
mod staging;
mod tag_cache;
