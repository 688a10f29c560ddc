//! A site under test: a copy of the example site in a temporary
//! directory (`DIR/site`), the state store it is applied to, and the
//! `patchops` commands run against both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use patchops::store::testing::Dropper;
use tempfile::TempDir;

use super::fs::copy_dir;
use super::process::Proc;
use super::run::{patchops, run_ok, run_with_limit};

/// Where a site's state is stored.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// A file in the site's directory, `state.db`.
    Sqlite,
    /// A fresh database on the test PostgreSQL, dropped with the site.
    Postgres,
}

pub struct Site {
    dir: TempDir,
    state: String,
    _db: Option<Dropper>,
}

impl Site {
    /// The example site with a SQLite state.
    pub fn new() -> Site {
        Site::on(Backend::Sqlite)
    }

    pub fn on(backend: Backend) -> Site {
        let dir = TempDir::new().expect("tmp");
        copy_dir(&repo().join("examples/site"), &dir.path().join("site"));
        let (state, db) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("state.db").display()),
                None,
            ),
            Backend::Postgres => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let (url, dropper) =
                    runtime.block_on(patchops::store::testing::fresh_postgres_url());
                (url, Some(dropper))
            }
        };
        Site {
            dir,
            state,
            _db: db,
        }
    }

    /// The temporary directory: the site is its `site/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The state store's URL.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// `patchops ARGS` in the site's directory, on its state, as actor
    /// `tester`, with no update mirror unless the test sets one.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = patchops();
        cmd.current_dir(self.dir.path())
            .env("PATCHOPS_STATE", &self.state)
            .env("PATCHOPS_ACTOR", "tester")
            .env_remove("PATCHOPS_UPDATE_MIRROR")
            .args(args);
        cmd
    }

    /// Runs [`Site::command`], failing the test after a minute.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_limit(self.command(args), Duration::from_secs(60))
    }

    /// Runs [`Site::command`], which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.command(args))
    }

    /// Serves `dp-hq` on loopback, points the site's `dp-hq` at it (and
    /// `dp-branch` at a port nothing listens on, so agents that fall back
    /// to it fail), and applies the site.
    pub fn apply_with_loopback_dp(&self) -> Proc {
        // The DP is served (on port 0) before apply fills it, so that its
        // URL, written into the manifest, is the port it bound: an empty
        // library, as apply would create it.
        let library = self.path("dp/dp-hq");
        patchops::dp::library::Library::create(&library).expect("an empty DP library");
        let mut cmd = patchops();
        cmd.args(["dp", "serve", "--listen", "127.0.0.1:0", "--path"])
            .arg(&library);
        let dp = Proc::start(cmd, &self.path("dp.log"));
        let dps = self.path("site/distribution-points.yaml");
        let text = std::fs::read_to_string(&dps)
            .expect("dps")
            .replace("http://dp-hq.corp.example:8080", &dp.base)
            .replace("http://dp-branch.corp.example:8080", "http://127.0.0.1:9");
        std::fs::write(&dps, text).expect("write");
        self.ok(&["apply", "site", "--auto-approve"]);
        dp
    }
}

/// The repository's root, where `examples/` and `tests/fixtures/` are.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The example site (copied to `dir/site`) and inventory applied to
/// `state`.
pub fn apply_example(dir: &Path, state: &str) {
    let site = dir.join("site");
    copy_dir(&repo().join("examples/site"), &site);
    let out = patchops()
        .current_dir(dir)
        .args(["apply", "site", "--auto-approve", "--state", state])
        .output()
        .expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = patchops()
        .args(["inventory", "import"])
        .arg(repo().join("examples/inventory.csv"))
        .args(["--state", state])
        .output()
        .expect("import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
