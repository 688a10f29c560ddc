//! patchops: SMS 2003-style patch management as a declarative GitOps
//! reconciler. See ARCHITECTURE.md for the map.

// Diagnostics travel by value on the error path only, where their size
// costs nothing measurable; boxing them everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod applicability;
pub mod atomic_file;
pub mod authenticode;
pub mod catalog;
pub mod cli;
pub mod command_line;
pub mod content;
pub mod diagnostic;
pub mod dp;
pub mod eval;
pub mod excerpt;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod git;
pub mod host;
pub mod http_server;
pub mod inventory;
pub mod load;
pub mod manifest;
pub mod model;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod query;
pub mod records;
pub mod remote;
pub mod render;
pub mod schema_check;
pub mod schemas;
pub mod secret;
pub mod server;
pub mod site;
pub mod store;
pub mod suggest;
pub mod supdate;
pub mod sync;
pub mod tls;
pub mod units;
pub mod untrusted;
pub mod validate;
pub mod yaml;

#[cfg(test)]
mod layering;
