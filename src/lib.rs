//! patchops: SMS 2003-style patch management as a declarative GitOps
//! reconciler. See ARCHITECTURE.md for the map.

pub mod diagnostic;
pub mod manifest;
pub mod schema_check;
pub mod suggest;
pub mod yaml;
pub mod load;
pub mod model;
pub mod query;
pub mod units;
pub mod validate;
pub mod cli;
pub mod render;
pub mod schemas;
