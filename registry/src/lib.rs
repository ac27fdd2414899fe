//! Strata's OCI Distribution v1.1 registry.
//!
//! - [`path`] parses `/v2/...` paths into validated routes;
//! - [`routes`] holds the handlers, thin calls into [`store::Store`];
//! - [`error`] is the one table of OCI error codes;
//! - [`server`] builds the router and runs it.
#![deny(missing_docs)]

pub mod error;
pub mod path;
pub mod range;
pub mod routes;
pub mod server;
