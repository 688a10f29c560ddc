//! Helpers for tests that drive the real `patchops` binary, one module
//! per concept; the test modules use them through the names here.

mod fs;
mod lcg;
mod net;
mod ports;
mod process;
mod run;
mod site;
mod tls;
mod wait;

pub use fs::copy_dir;
pub use lcg::Lcg;
pub use net::{http_client, serve_app, tls_forwarder};
pub use ports::reserved_port;
pub use process::{log_file, logs, Proc};
pub use run::{git, patchops, render_diagnostics, run_ok, run_validate, run_with_limit, text};
pub use site::{apply_example, repo, Backend, Site};
pub use tls::TestCa;
pub use wait::{wait_until, wait_until_blocking};
