//! The server's Prometheus metrics, kept by hand: a handful of counters and
//! fixed-bucket histograms behind atomics. The text exposition format is
//! simple enough that a metrics framework would add more than it saves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A latency histogram with [`BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 13],
    count: AtomicU64,
    /// Microseconds, so that the sum stays an integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Every metric the server exports.
#[derive(Default)]
pub struct Metrics {
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// route → latency.
    latency: Mutex<BTreeMap<&'static str, std::sync::Arc<Histogram>>>,
    pub policy_updates: AtomicU64,
    pub full_evaluation: Histogram,
    pub machine_evaluation: Histogram,
    pub status_messages: AtomicU64,
    pub status_duplicates: AtomicU64,
    pub registrations: AtomicU64,
    /// Patch-state reports stored (agents' scans).
    pub patch_state_reports: AtomicU64,
    /// Patch states stored (agents' scans and admin imports).
    pub patch_states: AtomicU64,
    /// Scheduled catalog syncs by outcome (unchanged, updated, refused,
    /// failed), one per catalog.
    syncs: Mutex<BTreeMap<&'static str, u64>>,
    /// The last deep validation of each DP, by name, as the leader knows
    /// it (a follower has none).
    dp_validations: Mutex<BTreeMap<String, DpValidationGauge>>,
}

/// What the metrics show of one DP's last validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DpValidationGauge {
    finished_ms: i64,
    outcome: &'static str,
    problems: u64,
    files_checked: u64,
    bytes_checked: u64,
}

impl From<&crate::records::DpValidation> for DpValidationGauge {
    fn from(v: &crate::records::DpValidation) -> Self {
        DpValidationGauge {
            finished_ms: v.finished_ms,
            outcome: v.outcome.as_str(),
            problems: v.problems,
            files_checked: v.files_checked,
            bytes_checked: v.bytes_checked,
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped
/// (a DP's name is the manifests' text).
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Metrics {
    /// Counts one scheduled catalog sync (`outcome`: unchanged, updated,
    /// refused or failed).
    pub fn count_sync(&self, outcome: &'static str) {
        if let Ok(mut m) = self.syncs.lock() {
            *m.entry(outcome).or_insert(0) += 1;
        }
    }

    /// Shows the stored validations of the DPs that are validated on a
    /// schedule (`dps`), replacing what was shown: called by the leader
    /// at each schedule check.
    pub fn set_dp_validations(&self, dps: &[String], stored: &[crate::records::DpValidation]) {
        if let Ok(mut m) = self.dp_validations.lock() {
            m.clear();
            for v in stored.iter().filter(|v| dps.contains(&v.dp)) {
                m.insert(v.dp.clone(), v.into());
            }
        }
    }
}

/// Gauges read from the site index at scrape time.
pub struct Gauges {
    pub machines: usize,
    pub policies: usize,
    pub collections: usize,
    pub serial: i64,
    pub store_up: bool,
    /// With `--manifests`.
    pub reconcile: Option<ReconcileGauges>,
}

/// The reconciler's counters and gauges, read at scrape time.
pub struct ReconcileGauges {
    /// result → reconciles that ended so.
    pub counts: Vec<(&'static str, u64)>,
    /// Epoch ms of the last successful reconcile; 0: none.
    pub last_success_ms: i64,
    pub leader: bool,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((route, status)).or_default() += 1;
        }
        let histogram = self
            .latency
            .lock()
            .map(|mut l| l.entry(route).or_default().clone());
        if let Ok(h) = histogram {
            h.observe(elapsed);
        }
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP patchops_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE patchops_http_requests_total counter\n");
        if let Ok(requests) = self.requests.lock() {
            for ((route, status), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "patchops_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP patchops_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE patchops_http_request_duration_seconds histogram\n");
        let latency: Vec<_> = self
            .latency
            .lock()
            .map(|l| l.iter().map(|(r, h)| (*r, h.clone())).collect())
            .unwrap_or_default();
        for (route, h) in latency {
            h.write(
                &mut out,
                "patchops_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "patchops_policy_updates_total",
            "Client policies that got a new version.",
            self.policy_updates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "patchops_registrations_total",
            "Machines registered (tokens issued).",
            self.registrations.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "patchops_status_messages_total",
            "Status messages stored.",
            self.status_messages.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "patchops_status_duplicates_total",
            "Status messages received again and ignored (same idempotency key).",
            self.status_duplicates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "patchops_patch_state_reports_total",
            "Patch-state reports (agents' scans) stored.",
            self.patch_state_reports.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "patchops_patch_states_total",
            "Patch states stored (agents' scans and imports through the admin API).",
            self.patch_states.load(Ordering::Relaxed),
        );
        out.push_str("# HELP patchops_evaluation_duration_seconds Collection evaluation time: full (every collection, every machine) or one machine.\n");
        out.push_str("# TYPE patchops_evaluation_duration_seconds histogram\n");
        self.full_evaluation.write(
            &mut out,
            "patchops_evaluation_duration_seconds",
            "scope=\"full\"",
        );
        self.machine_evaluation.write(
            &mut out,
            "patchops_evaluation_duration_seconds",
            "scope=\"machine\"",
        );
        gauge(
            &mut out,
            "patchops_machines",
            "Machines in the inventory.",
            gauges.machines.to_string(),
        );
        gauge(
            &mut out,
            "patchops_policies",
            "Machines with a client policy.",
            gauges.policies.to_string(),
        );
        gauge(
            &mut out,
            "patchops_collections",
            "Collections evaluated, built-in ones included.",
            gauges.collections.to_string(),
        );
        gauge(
            &mut out,
            "patchops_state_serial",
            "The serial of the applied state the server serves.",
            gauges.serial.to_string(),
        );
        gauge(
            &mut out,
            "patchops_store_up",
            "1 when the state store answered the last check.",
            u8::from(gauges.store_up).to_string(),
        );
        if let Some(r) = &gauges.reconcile {
            out.push_str("# HELP patchops_reconcile_total Reconciles by result (applied, unchanged, drift, invalid, failed).\n");
            out.push_str("# TYPE patchops_reconcile_total counter\n");
            for (result, n) in &r.counts {
                let _ = writeln!(out, "patchops_reconcile_total{{result=\"{result}\"}} {n}");
            }
            gauge(
                &mut out,
                "patchops_reconcile_last_success_timestamp",
                "Unix time of the last successful reconcile (0: none yet).",
                (r.last_success_ms as f64 / 1000.0).to_string(),
            );
            gauge(
                &mut out,
                "patchops_leader",
                "1 when this server leads the reconcile.",
                u8::from(r.leader).to_string(),
            );
            out.push_str("# HELP patchops_sync_total Scheduled catalog syncs by outcome (unchanged, updated, refused, failed).\n");
            out.push_str("# TYPE patchops_sync_total counter\n");
            let syncs = self.syncs.lock().map(|m| m.clone()).unwrap_or_default();
            for outcome in ["unchanged", "updated", "refused", "failed"] {
                let n = syncs.get(outcome).copied().unwrap_or(0);
                let _ = writeln!(out, "patchops_sync_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        let validations = self
            .dp_validations
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        if !validations.is_empty() {
            let family = |out: &mut String,
                          name: &str,
                          help: &str,
                          value: &dyn Fn(&DpValidationGauge) -> String| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (dp, v) in &validations {
                    let _ = writeln!(out, "{name}{{dp=\"{}\"}} {}", label_value(dp), value(v));
                }
            };
            family(
                &mut out,
                "patchops_dp_validation_last_timestamp_seconds",
                "Unix time the last deep content validation of the distribution point ended.",
                &|v| (v.finished_ms as f64 / 1000.0).to_string(),
            );
            family(
                &mut out,
                "patchops_dp_validation_problems",
                "Files the last deep validation found missing, damaged or not referenced.",
                &|v| v.problems.to_string(),
            );
            family(
                &mut out,
                "patchops_dp_validation_files_checked",
                "Files the last deep validation hashed.",
                &|v| v.files_checked.to_string(),
            );
            family(
                &mut out,
                "patchops_dp_validation_bytes_checked",
                "Bytes the last deep validation hashed.",
                &|v| v.bytes_checked.to_string(),
            );
            out.push_str("# HELP patchops_dp_validation_outcome The last deep validation's outcome (ok, problems, failed): 1 for the one it had.\n");
            out.push_str("# TYPE patchops_dp_validation_outcome gauge\n");
            for (dp, v) in &validations {
                for outcome in crate::records::DP_VALIDATION_OUTCOMES {
                    let _ = writeln!(
                        out,
                        "patchops_dp_validation_outcome{{dp=\"{}\",outcome=\"{outcome}\"}} {}",
                        label_value(dp),
                        u8::from(v.outcome == outcome.as_str())
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        h.write(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::default();
        m.request("/v1/policy", 304, Duration::from_millis(1));
        m.request("/v1/policy", 304, Duration::from_millis(1));
        m.request("/v1/policy", 401, Duration::from_millis(1));
        let text = m.render(&Gauges {
            machines: 1,
            policies: 1,
            collections: 7,
            serial: 3,
            store_up: true,
            reconcile: Some(ReconcileGauges {
                counts: vec![("applied", 2), ("invalid", 1)],
                last_success_ms: 1_500,
                leader: true,
            }),
        });
        assert!(
            text.contains("patchops_http_requests_total{route=\"/v1/policy\",status=\"304\"} 2\n")
        );
        assert!(
            text.contains("patchops_http_requests_total{route=\"/v1/policy\",status=\"401\"} 1\n")
        );
        assert!(text.contains("patchops_store_up 1\n"));
        assert!(text.contains("patchops_reconcile_total{result=\"invalid\"} 1\n"));
        assert!(text.contains("patchops_reconcile_last_success_timestamp 1.5\n"));
        assert!(text.contains("patchops_leader 1\n"));
        assert!(
            !text.contains("patchops_dp_validation"),
            "no DP validated yet"
        );
    }

    #[test]
    fn dp_validations_are_shown_with_escaped_names() {
        let m = Metrics::default();
        let v = crate::records::DpValidation {
            dp: "DP \"east\"\\1\nx".into(),
            path: "/srv/dp".into(),
            started_ms: 1_000,
            finished_ms: 2_500,
            outcome: crate::records::DpOutcome::Problems,
            files_checked: 3,
            bytes_checked: 12,
            problems: 1,
            problem_files: Vec::new(),
            message: None,
            repaired: 0,
            host: "h".into(),
            pid: 1,
        };
        let mut other = v.clone();
        other.dp = "DP-GONE".into();
        let dp = v.dp.clone();
        m.set_dp_validations(std::slice::from_ref(&dp), &[v, other]);
        let text = m.render(&Gauges {
            machines: 0,
            policies: 0,
            collections: 0,
            serial: 0,
            store_up: true,
            reconcile: None,
        });
        let label = r#"dp="DP \"east\"\\1\nx""#;
        assert!(
            text.contains(&format!(
                "patchops_dp_validation_last_timestamp_seconds{{{label}}} 2.5\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("patchops_dp_validation_problems{{{label}}} 1\n")));
        assert!(text.contains(&format!(
            "patchops_dp_validation_outcome{{{label},outcome=\"problems\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "patchops_dp_validation_outcome{{{label},outcome=\"ok\"}} 0\n"
        )));
        assert!(
            !text.contains("DP-GONE"),
            "a DP no longer scheduled is not shown"
        );
        // Every line is one sample: the newline in the name is escaped.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("patchops_")),
            "{text}"
        );
    }
}
