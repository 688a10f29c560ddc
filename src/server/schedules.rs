//! The schedules the leading server runs beside the reconcile (with
//! `--manifests`):
//!
//! - the sync host's: each catalog of an `unattended` SyncHost is
//!   synchronized when its next attempt is due (`sync_status` in the store:
//!   never tried, one `schedule.every` after a success, the failure backoff
//!   after a failure) — the same [`crate::sync::sync_once`] as `patchops
//!   sync`, so `patchops sync status` shows the server's attempts;
//! - the packages' `updateDistributionPoints`: when one is due, the
//!   package's source is hashed again and, when its content version differs
//!   from the applied one (e.g. a catalog the sync wrote), a reconcile is
//!   asked for at once, which copies the new version to the package's DPs.
//!
//! Only the leader runs them (the caller's loop sleeps while it follows).
//! When a step wrote or found new content, the caller reconciles at once.
//! A step runs as its own task beside the reconcile loop (a slow catalog
//! download delays no reconcile) and is cancelled on shutdown: every write
//! it makes is atomic and level-triggered, so a cut step is simply run
//! again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::model::Desired;
use crate::store::{Store, SyncAttempt};
use crate::sync::{self, CatalogOutcome, FetchOptions, Outcome, SyncOptions};

/// The shortest wait between two schedule checks.
const MIN_WAIT: Duration = Duration::from_millis(250);

/// What the schedules remember between steps (in memory: a new leader
/// starts the DP schedules afresh; the sync host's times are in the store).
#[derive(Debug, Default)]
pub struct Schedules {
    /// When each package's DP update last ran, epoch ms.
    dp_last_ms: BTreeMap<String, i64>,
    /// When this server began leading, epoch ms (the DP schedules without
    /// a `start` count from it).
    anchor_ms: Option<i64>,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct Ran {
    /// Sync hosts synchronized, with each catalog's outcome.
    pub synced: Vec<(String, Vec<CatalogOutcome>)>,
    /// Packages whose source no longer matches the applied content version.
    pub changed_packages: Vec<String>,
    /// How long until the next schedule is due.
    pub next_in: Duration,
}

impl Ran {
    /// A reconcile should follow at once: new content was written or found.
    pub fn wants_reconcile(&self) -> bool {
        !self.changed_packages.is_empty()
            || self.synced.iter().any(|(_, outcomes)| {
                outcomes.iter().any(|o| {
                    matches!(
                        o.outcome,
                        Outcome::Updated { .. } | Outcome::Unchanged { restored: true, .. }
                    )
                })
            })
    }
}

impl Schedules {
    /// Forgets the DP schedules' runs: called when this server (again)
    /// becomes the leader at `now_ms`.
    pub fn start_leading(&mut self, now_ms: i64) {
        self.dp_last_ms.clear();
        self.anchor_ms = Some(now_ms);
    }

    /// Runs whatever is due at `now_ms` for the site in `dir`; `max_wait`
    /// caps the time until the next check. Errors (invalid manifests, an
    /// unreadable store) are for the log; the caller tries again after
    /// `max_wait`.
    pub async fn run_due(
        &mut self,
        store: &Store,
        dir: &Path,
        fetch: &FetchOptions,
        now_ms: i64,
        max_wait: Duration,
    ) -> Result<Ran, String> {
        let anchor = *self.anchor_ms.get_or_insert(now_ms);
        // Reading and hashing files is blocking work: off the runtime's
        // workers; the downloads are async (and so cancellable).
        let owned = dir.to_path_buf();
        let report = tokio::task::spawn_blocking(move || {
            crate::validate::validate_dir(&owned, crate::validate::Options::default())
        })
        .await
        .map_err(|e| format!("the validation task failed: {e}"))?
        .map_err(|d| d.message)?;
        if !report.is_valid() {
            return Err("the manifests are invalid; no schedule runs until they are fixed".into());
        }
        let desired = &report.desired;
        let mut ran = Ran::default();
        let mut next_ms = now_ms + millis(max_wait);

        // The sync hosts.
        let statuses = store.sync_status().await.map_err(|e| e.to_string())?;
        let next_attempt = |url: &str| {
            statuses
                .iter()
                .find(|s| s.url == url)
                .map(|s| (s.next_attempt_ms, s.consecutive_failures))
        };
        for (name, host) in &desired.sync_hosts {
            if !host.spec.unattended {
                continue;
            }
            let mut spec = host.spec.clone();
            spec.catalogs
                .retain(|c| next_attempt(&c.url).is_none_or(|(at, _)| at <= now_ms));
            if spec.catalogs.is_empty() {
                continue;
            }
            let outcomes =
                sync_host(store, dir, desired, &spec, fetch, now_ms, &next_attempt).await;
            ran.synced.push((name.clone(), outcomes));
        }
        let statuses = store.sync_status().await.map_err(|e| e.to_string())?;
        for host in desired.sync_hosts.values().filter(|h| h.spec.unattended) {
            for c in &host.spec.catalogs {
                if let Some(s) = statuses.iter().find(|s| s.url == c.url) {
                    next_ms = next_ms.min(s.next_attempt_ms);
                }
            }
        }

        // The packages' DP update schedules.
        let due = dp_due(desired, &self.dp_last_ms, anchor, now_ms);
        if !due.is_empty() {
            let applied = applied_content_versions(store).await?;
            let (owned, site) = (dir.to_path_buf(), desired.clone());
            let current = tokio::task::spawn_blocking(move || {
                crate::ops::distribute::package_content(&owned, &site)
            })
            .await
            .map_err(|e| format!("the hashing task failed: {e}"))?
            .map_err(|e| e.to_string())?;
            for name in due {
                self.dp_last_ms.insert(name.clone(), now_ms);
                let now_version = current.get(&name).map(|m| m.version.as_str());
                if now_version != applied.get(&name).map(String::as_str) {
                    ran.changed_packages.push(name);
                }
            }
        }
        if let Some(at) = dp_next_ms(desired, &self.dp_last_ms, anchor) {
            next_ms = next_ms.min(at);
        }
        let wait = u64::try_from(next_ms.saturating_sub(now_ms)).unwrap_or(0);
        ran.next_in = Duration::from_millis(wait).clamp(MIN_WAIT, max_wait.max(MIN_WAIT));
        Ok(ran)
    }
}

/// One sync host's due catalogs; a fetcher that cannot be set up (a proxy
/// password that cannot be read, a bad CA file) is recorded as a failed
/// attempt of each, with the usual backoff.
async fn sync_host(
    store: &Store,
    dir: &Path,
    desired: &Desired,
    spec: &crate::manifest::SyncHostSpec,
    fetch: &FetchOptions,
    now_ms: i64,
    previous: &(dyn Fn(&str) -> Option<(i64, u32)> + Sync),
) -> Vec<CatalogOutcome> {
    match sync::host_fetcher(dir, spec, fetch) {
        Ok(fetcher) => {
            sync::sync_once(
                store,
                dir,
                desired,
                spec,
                &fetcher,
                &SyncOptions {
                    now_ms,
                    verifier: &sync::verifications_from_manifest,
                    summarize: None,
                },
            )
            .await
        }
        Err(e) => {
            let schedule = crate::units::parse_duration(spec.schedule.every.as_str())
                .unwrap_or(Duration::from_secs(24 * 3600));
            let mut out = Vec::new();
            for c in &spec.catalogs {
                let failures = previous(&c.url).map_or(0, |(_, f)| f) + 1;
                let next = now_ms + millis(sync::failure_delay(failures, schedule));
                let attempt = SyncAttempt {
                    url: c.url.clone(),
                    kind: sync::kind_name(c.catalog_type).to_string(),
                    at_ms: now_ms,
                    error: Some(e.to_string()),
                    next_attempt_ms: next,
                };
                let (failures, next) = match store.record_sync_attempt(&attempt).await {
                    Ok(s) => (s.consecutive_failures, s.next_attempt_ms),
                    Err(_) => (failures, next),
                };
                out.push(CatalogOutcome {
                    url: c.url.clone(),
                    kind: attempt.kind.clone(),
                    package: c.package.clone(),
                    outcome: Outcome::Failed {
                        error: e.to_string(),
                        help: e.help(),
                    },
                    consecutive_failures: failures,
                    next_attempt_ms: next,
                });
            }
            out
        }
    }
}

/// The packages whose `updateDistributionPoints` is due at `now_ms`.
fn dp_due(
    desired: &Desired,
    last: &BTreeMap<String, i64>,
    anchor_ms: i64,
    now_ms: i64,
) -> Vec<String> {
    dp_schedules(desired)
        .filter(|(name, start, every)| {
            next_run_ms(last.get(*name).copied(), *start, *every, anchor_ms) <= now_ms
        })
        .map(|(name, _, _)| name.to_string())
        .collect()
}

/// When the next DP update of any package is due.
fn dp_next_ms(desired: &Desired, last: &BTreeMap<String, i64>, anchor_ms: i64) -> Option<i64> {
    dp_schedules(desired)
        .map(|(name, start, every)| next_run_ms(last.get(name).copied(), start, every, anchor_ms))
        .min()
}

/// Each package with a source and an `updateDistributionPoints`: its name,
/// its `start` (an instant; a wall-clock start counts as none) and period.
fn dp_schedules(desired: &Desired) -> impl Iterator<Item = (&str, Option<i64>, i64)> {
    desired.packages.iter().filter_map(|(name, p)| {
        let interval = p.spec.update_distribution_points.as_ref()?;
        p.spec.source.as_ref()?;
        let every = crate::units::parse_duration(interval.every.as_str()).ok()?;
        let start = interval
            .start
            .as_ref()
            .and_then(|t| crate::units::parse_time(t.as_str()).ok())
            .and_then(|t| match t {
                crate::units::ScheduleTime::Instant(ts) => Some(ts.as_millisecond()),
                crate::units::ScheduleTime::Local(_) => None,
            });
        Some((name.as_str(), start, millis(every).max(1)))
    })
}

/// When a schedule of period `every` runs next: one period after its last
/// run; the first time at `start` when given, else one period after
/// `anchor_ms` (when this server began leading). Pure.
pub fn next_run_ms(
    last_ms: Option<i64>,
    start_ms: Option<i64>,
    every_ms: i64,
    anchor_ms: i64,
) -> i64 {
    match (last_ms, start_ms) {
        (Some(last), _) => last.saturating_add(every_ms),
        (None, Some(start)) if start >= anchor_ms => start,
        // A start in the past: the next run on its grid.
        (None, Some(start)) => {
            let periods = (anchor_ms - start) / every_ms + 1;
            start.saturating_add(periods.saturating_mul(every_ms))
        }
        (None, None) => anchor_ms.saturating_add(every_ms),
    }
}

/// The applied content version of each package, from the stored objects.
async fn applied_content_versions(store: &Store) -> Result<BTreeMap<String, String>, String> {
    let objects = store.objects().await.map_err(|e| e.to_string())?;
    Ok(objects
        .iter()
        .filter(|o| o.kind == crate::manifest::Kind::Package.as_str())
        .filter_map(|o| {
            let spec: serde_json::Value = serde_json::from_str(&o.spec).ok()?;
            let version = spec.get("content")?.get("version")?.as_str()?.to_string();
            Some((o.name.clone(), version))
        })
        .collect())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site with two packages, one with `updateDistributionPoints: {every:
    /// 2s}`, applied to a SQLite store.
    async fn applied_site(dir: &Path) -> Store {
        use std::os::unix::fs::PermissionsExt;
        for (name, text) in [
            (
                "site.yaml",
                "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n",
            ),
            (
                "packages.yaml",
                "apiVersion: patchops/v1\nkind: Package\nmetadata: {name: Scheduled}\nspec:\n  source: src/scheduled\n  updateDistributionPoints: {every: 2s}\n  programs:\n    - {name: Run, commandLine: run.cmd}\n---\napiVersion: patchops/v1\nkind: Package\nmetadata: {name: Unscheduled}\nspec:\n  source: src/unscheduled\n  programs:\n    - {name: Run, commandLine: run.cmd}\n",
            ),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        for source in ["src", "src/scheduled", "src/unscheduled"] {
            std::fs::create_dir_all(dir.join(source)).unwrap();
            std::fs::set_permissions(dir.join(source), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        for file in ["src/scheduled/run.cmd", "src/unscheduled/run.cmd"] {
            std::fs::write(dir.join(file), "run\r\n").unwrap();
            std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let store = Store::open(&format!("sqlite://{}", dir.join("state.db").display()))
            .await
            .unwrap();
        apply(&store, dir).await;
        store
    }

    async fn apply(store: &Store, dir: &Path) {
        let request = crate::ops::plan::Request {
            dir,
            options: crate::plan::PlanOptions::default(),
            sign_key: None,
            validate_content: false,
        };
        let plan = crate::ops::plan::make(store, &request).await.unwrap();
        let actor = crate::ops::Actor::current(["test".to_string()]);
        crate::ops::apply::apply(
            store,
            &plan,
            &actor,
            Duration::from_secs(10),
            false,
            &|_| {},
        )
        .await
        .unwrap();
    }

    fn write(dir: &Path, file: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join(file), text).unwrap();
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    #[tokio::test]
    async fn dp_updates_report_a_changed_source_only_when_due() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        std::fs::create_dir_all(&dir).unwrap();
        let store = applied_site(&dir).await;
        let fetch = FetchOptions::default();
        let max = Duration::from_secs(60);
        let t0 = 1_000_000;
        let mut s = Schedules::default();
        s.start_leading(t0);

        // Nothing due yet; the next check is the schedule's 2 s.
        let ran = s.run_due(&store, &dir, &fetch, t0, max).await.unwrap();
        assert!(ran.changed_packages.is_empty() && !ran.wants_reconcile());
        assert_eq!(ran.next_in, Duration::from_secs(2));

        // Both sources change; before the schedule is due, nothing is seen.
        write(&dir, "src/scheduled/mssecure.xml", "<v2/>");
        write(&dir, "src/unscheduled/extra.txt", "x");
        let ran = s
            .run_due(&store, &dir, &fetch, t0 + 1_000, max)
            .await
            .unwrap();
        assert!(ran.changed_packages.is_empty());
        assert_eq!(ran.next_in, Duration::from_secs(1));

        // Due: only the scheduled package is reported, and a reconcile asked.
        let ran = s
            .run_due(&store, &dir, &fetch, t0 + 2_000, max)
            .await
            .unwrap();
        assert_eq!(ran.changed_packages, vec!["Scheduled".to_string()]);
        assert!(ran.wants_reconcile());

        // Once applied, the next run finds nothing to refresh.
        apply(&store, &dir).await;
        let ran = s
            .run_due(&store, &dir, &fetch, t0 + 4_000, max)
            .await
            .unwrap();
        assert!(
            ran.changed_packages.is_empty(),
            "{:?}",
            ran.changed_packages
        );

        // Invalid manifests run no schedule.
        write(&dir, "broken.yaml", "apiVersion: patchops/v1\nkind: Nope\n");
        let err = s
            .run_due(&store, &dir, &fetch, t0 + 6_000, max)
            .await
            .unwrap_err();
        assert!(err.contains("invalid"), "{err}");
    }

    #[test]
    fn next_run_counts_from_the_last_run_the_start_or_the_anchor() {
        // After a run: one period later.
        assert_eq!(next_run_ms(Some(1_000), Some(0), 500, 0), 1_500);
        // Never run, no start: one period after the anchor.
        assert_eq!(next_run_ms(None, None, 500, 10_000), 10_500);
        // A start in the future: at the start.
        assert_eq!(next_run_ms(None, Some(20_000), 500, 10_000), 20_000);
        // A start in the past: the next point on its grid after the anchor.
        assert_eq!(next_run_ms(None, Some(9_000), 400, 10_000), 10_200);
        assert_eq!(next_run_ms(None, Some(9_000), 500, 10_000), 10_500);
    }
}
