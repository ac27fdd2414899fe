//! Strata's OCI Distribution v1.1 registry.
//!
//! - [`path`] parses `/v2/...` paths into validated routes;
//! - [`routes`] holds the handlers, thin calls into [`store::Store`];
//! - [`auth`] decides who may do what (htpasswd, tokens, rules);
//! - [`error`] is the one table of OCI error codes;
//! - [`config`] is the TOML configuration;
//! - [`metrics`] counts requests for `/metrics`;
//! - [`limits`] rate-limits clients and budgets manifest bodies;
//! - [`conn`] caps the connections held at once;
//! - [`server`] builds the router and runs it.
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod conn;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod range;
pub mod routes;
pub mod server;
