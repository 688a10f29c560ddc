//! Test helpers (for this crate's unit and integration tests; not an API).
//!
//! [`fresh_postgres_url`] makes a new, empty PostgreSQL database for one test
//! and drops it when the returned [`Dropper`] goes out of scope, so that test
//! runs never collide. The server comes from `PATCHOPS_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432`); any database path in it is
//! ignored.

use sqlx::{Connection, Executor, PgConnection};

/// Where the test PostgreSQL server is, unless `PATCHOPS_TEST_POSTGRES` says.
pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// Drops the test database when dropped.
#[derive(Debug)]
pub struct Dropper {
    admin_url: String,
    name: String,
}

impl Dropper {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The test server's base URL (scheme, credentials, host, port and query;
/// no database).
pub fn postgres_base() -> String {
    std::env::var("PATCHOPS_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_POSTGRES.to_string())
}

/// `base` with its database path replaced by `/database` (query kept).
pub fn with_database(base: &str, database: &str) -> String {
    let start = base.find("://").map_or(0, |i| i + 3);
    // The authority ends at the first '/', '?' or '#' after the userinfo.
    let after_at = base[start..].rfind('@').map_or(start, |i| start + i + 1);
    let auth_end = base[after_at..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| after_at + i);
    let rest = &base[auth_end..];
    let query = rest.find(['?', '#']).map_or("", |i| &rest[i..]);
    format!("{}/{database}{query}", &base[..auth_end])
}

/// Creates a fresh database `patchops_t_<random>` and returns its URL and
/// the guard that drops it. Panics (this is for tests) when the server
/// cannot be reached.
pub async fn fresh_postgres_url() -> (String, Dropper) {
    let base = postgres_base();
    let name = format!("patchops_t_{}", uuid::Uuid::new_v4().simple());
    let admin_url = with_database(&base, "postgres");
    let shown = crate::secret::display_url(&admin_url);
    let mut conn =
        match tokio::time::timeout(super::CONNECT_TIMEOUT, PgConnection::connect(&admin_url)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("cannot reach the test PostgreSQL at {shown}: {e}"),
            Err(_) => panic!("cannot reach the test PostgreSQL at {shown}: timed out"),
        };
    if let Err(e) = conn
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
    {
        panic!("cannot create the test database {name} at {shown}: {e}");
    }
    let _ = conn.close().await;
    (with_database(&base, &name), Dropper { admin_url, name })
}

impl Drop for Dropper {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, where no other runtime may
        // block: do the work on a thread of its own.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(Ok(mut conn)) =
                    tokio::time::timeout(super::CONNECT_TIMEOUT, PgConnection::connect(&admin_url))
                        .await
                {
                    // FORCE: pools the test left open are disconnected.
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = worker.join();
    }
}
