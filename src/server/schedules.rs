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
//!   asked for at once, which copies the new version to the package's DPs;
//! - the distribution points' deep content validation
//!   (`DistributionPoint.spec.validation`, see [`super::validation`]): each
//!   DP due is re-hashed and the result stored; with `--drift correct` its
//!   damaged files are removed and a reconcile is asked for, which copies
//!   them again.
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
use crate::records::SyncAttempt;
use crate::store::Store;
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
    /// DPs whose validation could not run or be stored: not before then,
    /// epoch ms (the validations' own times are in the store).
    validation_retry_ms: BTreeMap<String, i64>,
}

/// Who runs the schedules: the lease the results are recorded under, and
/// whether damaged DP content is repaired (`--drift correct`).
#[derive(Debug, Clone)]
pub struct Leading {
    pub lease_id: String,
    pub repair: bool,
}

/// What one step did.
#[derive(Debug, Default)]
pub struct Ran {
    /// Sync hosts synchronized, with each catalog's outcome.
    pub synced: Vec<(String, Vec<CatalogOutcome>)>,
    /// Packages whose source no longer matches the applied content version.
    pub changed_packages: Vec<String>,
    /// DPs validated, with their result and whether it was stored.
    pub validated: Vec<(crate::records::DpValidation, bool)>,
    /// DPs due whose validation must wait, and why.
    pub validation_later: Vec<(String, String)>,
    /// The DPs validated on a schedule, and the last stored validation of
    /// each DP (for the metrics).
    pub validation_scheduled: Vec<String>,
    pub validations: Vec<crate::records::DpValidation>,
    /// How long until the next schedule is due.
    pub next_in: Duration,
}

impl Ran {
    /// A reconcile should follow at once: new content was written or found.
    pub fn wants_reconcile(&self) -> bool {
        !self.changed_packages.is_empty()
            || self.validated.iter().any(|(v, _)| v.repaired > 0)
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
        self.validation_retry_ms.clear();
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
        leading: &Leading,
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
                let mut sources = crate::ops::distribute::SourceReader::new(&owned);
                let content = crate::ops::distribute::package_content(&mut sources, &site);
                sources.save();
                content
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

        // The distribution points' deep content validation.
        let scheduled = super::validation::scheduled(desired);
        if !scheduled.is_empty() {
            let mut last: BTreeMap<String, crate::records::DpValidation> = store
                .dp_validations()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|v| (v.dp.clone(), v))
                .collect();
            let started = |last: &BTreeMap<String, crate::records::DpValidation>, dp: &str| {
                last.get(dp).map(|v| v.started_ms)
            };
            let retry_ms = millis(super::validation::RETRY);
            for dp in &scheduled {
                let retry = self.validation_retry_ms.get(&dp.dp).copied();
                let due =
                    super::validation::next_due_ms(started(&last, &dp.dp), dp.every_ms, retry);
                if due > now_ms {
                    continue;
                }
                match super::validation::validate_dp(
                    store,
                    dp,
                    &leading.lease_id,
                    leading.repair,
                    now_ms,
                )
                .await
                {
                    super::validation::Validated::Done { validation, stored } => {
                        self.validation_retry_ms.remove(&dp.dp);
                        if stored {
                            last.insert(dp.dp.clone(), validation.clone());
                        } else {
                            // Another server leads now; it validates.
                            self.validation_retry_ms
                                .insert(dp.dp.clone(), now_ms + dp.every_ms);
                        }
                        ran.validated.push((validation, stored));
                    }
                    super::validation::Validated::Later(why) => {
                        self.validation_retry_ms
                            .insert(dp.dp.clone(), now_ms + dp.every_ms.min(retry_ms));
                        ran.validation_later.push((dp.dp.clone(), why));
                    }
                }
            }
            for dp in &scheduled {
                let retry = self.validation_retry_ms.get(&dp.dp).copied();
                let due =
                    super::validation::next_due_ms(started(&last, &dp.dp), dp.every_ms, retry);
                next_ms = next_ms.min(due.max(now_ms));
            }
            ran.validation_scheduled = scheduled.iter().map(|d| d.dp.clone()).collect();
            ran.validations = last.into_values().collect();
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
        let site = crate::site::Site::Local(store.clone());
        let plan = crate::ops::plan::make(&site, &request).await.unwrap();
        let actor = crate::ops::Actor::current(["test".to_string()]);
        crate::ops::apply::apply(
            &site,
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
        let leading = Leading {
            lease_id: "test".into(),
            repair: false,
        };

        // Nothing due yet; the next check is the schedule's 2 s.
        let ran = s
            .run_due(&store, &dir, &fetch, &leading, t0, max)
            .await
            .unwrap();
        assert!(ran.changed_packages.is_empty() && !ran.wants_reconcile());
        assert_eq!(ran.next_in, Duration::from_secs(2));

        // Both sources change; before the schedule is due, nothing is seen.
        write(&dir, "src/scheduled/mssecure.xml", "<v2/>");
        write(&dir, "src/unscheduled/extra.txt", "x");
        let ran = s
            .run_due(&store, &dir, &fetch, &leading, t0 + 1_000, max)
            .await
            .unwrap();
        assert!(ran.changed_packages.is_empty());
        assert_eq!(ran.next_in, Duration::from_secs(1));

        // Due: only the scheduled package is reported, and a reconcile asked.
        let ran = s
            .run_due(&store, &dir, &fetch, &leading, t0 + 2_000, max)
            .await
            .unwrap();
        assert_eq!(ran.changed_packages, vec!["Scheduled".to_string()]);
        assert!(ran.wants_reconcile());

        // Once applied, the next run finds nothing to refresh.
        apply(&store, &dir).await;
        let ran = s
            .run_due(&store, &dir, &fetch, &leading, t0 + 4_000, max)
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
            .run_due(&store, &dir, &fetch, &leading, t0 + 6_000, max)
            .await
            .unwrap_err();
        assert!(err.contains("invalid"), "{err}");
    }

    /// A site with one DP (`validation: {every: 1h}`) holding one package,
    /// applied (so distributed); the store's leader lease held by `lease`.
    async fn validated_site(dir: &Path, lease: &str) -> Store {
        use std::os::unix::fs::PermissionsExt;
        let dp = dir.parent().unwrap().join("dp");
        write(
            dir,
            "site.yaml",
            "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n",
        );
        write(
            dir,
            "dp.yaml",
            &format!(
                "apiVersion: patchops/v1\nkind: DistributionPoint\nmetadata: {{name: DP1}}\nspec:\n  path: {}\n  url: http://dp1.lab.example/content\n  validation: {{every: 1h}}\n",
                dp.display()
            ),
        );
        write(
            dir,
            "package.yaml",
            "apiVersion: patchops/v1\nkind: Package\nmetadata: {name: Tool}\nspec:\n  source: src/tool\n  distributionPoints: [DP1]\n  programs:\n    - {name: Run, commandLine: run.cmd}\n",
        );
        for source in ["src", "src/tool"] {
            std::fs::create_dir_all(dir.join(source)).unwrap();
            std::fs::set_permissions(dir.join(source), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        write(dir, "src/tool/run.cmd", "run\r\n");
        write(dir, "src/tool/tool.dll", "tool bytes");
        let store = Store::open(&format!("sqlite://{}", dir.join("state.db").display()))
            .await
            .unwrap();
        apply(&store, dir).await;
        let request = crate::records::LockRequest {
            id: lease.to_string(),
            holder: "test".into(),
            host: "test".into(),
            pid: std::process::id(),
            command: "test".into(),
            lease: Duration::from_secs(600),
        };
        assert!(store
            .try_lease(crate::store::LEADER_LEASE, &request)
            .await
            .unwrap());
        store
    }

    /// Changes a DP file's bytes (same size) and records its new stat as
    /// the published one: what bit rot under an unchanged inode looks
    /// like, which only a deep validation can see (a user cannot set a
    /// file's ctime back).
    fn rot(dp: &Path, content: &str) -> std::path::PathBuf {
        use sha2::Digest;
        use std::os::unix::fs::PermissionsExt;
        let sha = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        let blob = dp.join("files").join(&sha[..2]).join(&sha);
        std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut rotten = content.as_bytes().to_vec();
        rotten[0] ^= 0x20;
        std::fs::write(&blob, &rotten).unwrap();
        let index_path = dp.join(crate::dp::library::INDEX);
        let mut index: crate::dp::fingerprint::Index =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        let meta = std::fs::symlink_metadata(&blob).unwrap();
        index
            .files
            .insert(sha, crate::dp::fingerprint::Fingerprint::of(&meta));
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
        blob
    }

    #[tokio::test]
    async fn dp_validation_runs_when_due_stores_its_findings_and_repairs_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        std::fs::create_dir_all(&dir).unwrap();
        let dp = tmp.path().join("dp");
        let store = validated_site(&dir, "me").await;
        let fetch = FetchOptions::default();
        let max = Duration::from_secs(24 * 3600);
        let hour = 3_600_000;
        let t0 = 1_000_000_000;
        let detect = Leading {
            lease_id: "me".into(),
            repair: false,
        };
        let mut s = Schedules::default();
        s.start_leading(t0);

        // Never validated: due at once; clean; the next check in one hour.
        let ran = s
            .run_due(&store, &dir, &fetch, &detect, t0, max)
            .await
            .unwrap();
        assert_eq!(ran.validated.len(), 1, "{:?}", ran.validation_later);
        let (v, stored) = &ran.validated[0];
        assert!(stored);
        assert_eq!((v.dp.as_str(), v.outcome.as_str()), ("DP1", "ok"));
        assert_eq!((v.files_checked, v.bytes_checked, v.problems), (2, 15, 0));
        assert_eq!(v.started_ms, t0);
        assert_eq!(ran.next_in, Duration::from_secs(3600));
        assert!(!ran.wants_reconcile());

        // Rot that the cheap check cannot see; before the hour, nothing runs.
        let blob = rot(&dp, "tool bytes");
        let lib = crate::dp::library::Library::open(&dp).unwrap();
        assert_eq!(
            lib.validate(false).unwrap(),
            vec![],
            "the cheap check is fooled"
        );
        let ran = s
            .run_due(&store, &dir, &fetch, &detect, t0 + hour - 60_000, max)
            .await
            .unwrap();
        assert!(ran.validated.is_empty());
        assert_eq!(ran.next_in, Duration::from_secs(60));

        // Due: found and stored; detect mode keeps the file.
        let ran = s
            .run_due(&store, &dir, &fetch, &detect, t0 + hour, max)
            .await
            .unwrap();
        let (v, _) = &ran.validated[0];
        assert_eq!(
            (v.outcome.as_str(), v.problems, v.repaired),
            ("problems", 1, 0)
        );
        assert_eq!(
            v.problem_files[0].problem,
            crate::records::DpProblemKind::Corrupt
        );
        assert!(v.problem_files[0]
            .file
            .ends_with(blob.file_name().unwrap().to_str().unwrap()));
        assert!(blob.exists());
        assert!(!ran.wants_reconcile());
        let stored = store.dp_validations().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(&stored[0], v);

        // Another server's lease: the result is not stored.
        let other = Leading {
            lease_id: "not-the-leader".into(),
            repair: false,
        };
        let ran = s
            .run_due(&store, &dir, &fetch, &other, t0 + 2 * hour, max)
            .await
            .unwrap();
        assert!(!ran.validated[0].1, "written only under the leader lease");
        assert_eq!(
            store.dp_validations().await.unwrap()[0].started_ms,
            t0 + hour
        );

        // Correct mode: the damaged file goes, and a reconcile is asked for;
        // a file no version refers to goes too.
        let stray = dp.join("files/ab").join("ab".repeat(32));
        std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
        std::fs::write(&stray, b"put here by hand").unwrap();
        let correct = Leading {
            lease_id: "me".into(),
            repair: true,
        };
        let mut s = Schedules::default();
        s.start_leading(t0 + 3 * hour);
        let ran = s
            .run_due(&store, &dir, &fetch, &correct, t0 + 3 * hour, max)
            .await
            .unwrap();
        let (v, stored) = &ran.validated[0];
        assert!(stored);
        assert_eq!((v.problems, v.repaired), (2, 2));
        assert!(!blob.exists());
        assert!(!stray.exists());
        assert!(ran.wants_reconcile());
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
