//! The integration tests, as one test binary: each module was once a
//! binary of its own, and each binary relinked the crate and recompiled
//! the support code. `cargo test --test it agent::` runs one module.
//!
//! Each test drives the real `patchops` binary (`support::patchops`), so
//! tests share nothing in process but the helpers; state lives in a
//! temporary directory or a fresh PostgreSQL database per test.

mod agent;
mod agent_scan;
mod applicability;
mod authenticode;
mod bad_manifests;
mod catalog;
mod cli;
mod dp;
mod dp_drift;
mod dp_faults;
mod dp_validation;
mod e2e;
mod faults;
mod http_limits;
mod inventory;
mod openapi;
mod plan_apply;
mod reconcile;
mod redirects;
mod secrets;
mod server;
mod software_updates;
mod support;
mod sync;
