//! Client policy: what each machine's agent is told to run, and where its
//! content is. Pure: no I/O, no clock.
//!
//! [`PolicySite`] is built once from the desired site and the content
//! summaries; it resolves everything that does not depend on the machine
//! (program settings, run-first chains, content references, distribution
//! points with parsed boundaries). [`machine_policy`] then builds one
//! machine's [`MachinePolicy`] — the `patchops-policy/v1` document served
//! by `GET /v1/policy` (see `docs/policy.md`) — from the names of the
//! advertisements that target the machine (collection evaluation is the
//! caller's business). [`all_policies`] does the same for a whole
//! inventory and returns only [`PolicyDigest`]s (hash and per-assignment
//! fingerprints), which is what plans compare: [`diff`] and
//! [`blast_radius`] say which assignments a change adds, removes or
//! changes on how many machines.
//!
//! Rules (each has a unit test in `tests.rs`):
//! * An advertisement yields an assignment on a machine when it targets the
//!   machine, its package and program exist, the program is not disabled,
//!   the program's content is known when the package has a source, every
//!   program of its run-first chain satisfies the same, and the machine is
//!   on one of the platforms every program of the chain allows.
//! * Platforms come from `architecture` and `os.version` (5.0 Windows 2000,
//!   5.1 XP, 5.2 Server 2003, or XP with `x64` when `os.type` is
//!   `workstation`). A machine matches a platform list only when it is on a
//!   listed platform *for certain*: with unknown facts (no architecture, no
//!   version, an x64 5.2 machine of unknown type unless both x64 platforms
//!   are listed) it gets no program restricted to platforms.
//! * Distribution points: those of the package, enabled, in the site;
//!   local ones first (a boundary contains one of the machine's addresses,
//!   or the DP has no boundaries), then by name. Remote DPs are listed even
//!   when the advertisement's remote action is `doNotRun`: the agent
//!   applies the action (it knows whether it is roaming).
//! * The policy holds no time: dates are passed through for the agent to
//!   evaluate, so the same site and machine always give the same bytes and
//!   the same [`MachinePolicy::hash`].

mod bulk;
mod radius;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::content::ContentSummary;
use crate::inventory::Machine;
use crate::manifest::advertisement::{AssignmentEvent, LocalDpAction, RemoteDpAction, Rerun};
use crate::manifest::common::{CanRun, Priority};
use crate::manifest::package::{AfterRunning, DriveMode, Platform, Program, RunMode, RunWith};
use crate::manifest::site::ClientPolicySettings;
use crate::manifest::software_update_package::{AfterCountdown, PostponeRestart};
use crate::model::Desired;
use crate::plan::canonical::canonical_time;
use crate::query::Ipv4Net;

pub use bulk::{all_policies, AssignmentDigest, PolicyDigest};
pub use radius::{blast_radius, diff, BlastRadius, Impact, PolicyDiff};

/// The `format` of every policy document this module writes.
pub const POLICY_FORMAT: &str = "patchops-policy/v1";

/// The run time limit of a program that declares none: 12 hours (SMS's 720
/// minutes).
pub const DEFAULT_MAX_RUN_TIME_SECS: u64 = 12 * 3600;

// ---------------------------------------------------------------------------
// The wire format. Field order is the serialization order; there are no maps,
// so the JSON of a policy is canonical and its hash stable.

/// One machine's policy: the `patchops-policy/v1` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachinePolicy {
    /// Always [`POLICY_FORMAT`].
    pub format: String,
    /// The site's code; absent when the desired site declares no site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_code: Option<String>,
    pub client: ClientSettings,
    /// One per advertisement that applies to the machine, by advertisement
    /// name.
    pub assignments: Vec<PolicyAssignment>,
    /// Every program some assignment's `runFirst` chain names, by package
    /// then program name: the agent looks `runFirst` up here.
    pub programs: Vec<PolicyProgram>,
}

/// The site's client settings, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientSettings {
    pub polling_interval_seconds: u64,
    pub jitter_seconds: u64,
    pub heartbeat_interval_seconds: u64,
}

/// One advertisement as it applies to the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAssignment {
    pub advertisement: String,
    /// The schedule has entries: the agent runs the program at them.
    pub mandatory: bool,
    /// Canonical RFC 3339; without offset: the client's local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub schedule: Vec<PolicySchedule>,
    pub rerun: Rerun,
    pub allow_users_to_run_independently: bool,
    pub mandatory_over_slow_links: bool,
    pub priority: Priority,
    pub local_distribution_point: LocalDpAction,
    pub remote_distribution_point: RemoteDpAction,
    /// The program to run, with its content and where to get it.
    pub program: PolicyProgram,
}

/// One mandatory assignment time: `start` (and `everySeconds` when it
/// recurs) or `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<AssignmentEvent>,
}

/// A program with every setting resolved, its content and its
/// distribution points for this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProgram {
    pub package: String,
    pub program: String,
    pub command_line: String,
    /// Shown to users.
    pub comment: String,
    pub run_mode: RunMode,
    pub after_running: AfterRunning,
    pub max_run_time_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_disk_space_bytes: Option<u64>,
    pub can_run: CanRun,
    pub run_with: RunWith,
    pub allow_user_interaction: bool,
    pub drive_mode: DriveMode,
    /// Upper case, for `specificDriveLetter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_letter: Option<String>,
    pub reconnect_at_logon: bool,
    pub suppress_notifications: bool,
    pub expedited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<PolicyRemoval>,
    /// Run this program first; it is in the policy's `programs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_first: Option<RunFirst>,
    /// None: the package has no source; the command is already on the
    /// client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<PolicyContent>,
    /// Local ones first, then by name; empty without content.
    pub distribution_points: Vec<PolicyDistributionPoint>,
    /// An inventory program: the agent scans with this catalog from the
    /// program's content and reports patch states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<PolicyScan>,
    /// Programs of software update packages: the installation agent's
    /// settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_agent: Option<PolicyInstallAgent>,
    /// Programs of software update packages: what users are told and
    /// whether they may postpone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<PolicyNotification>,
    /// The package's notice as plain text (its RTF read when planned); on
    /// the advertised program of a software update package only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// A software update package's installation agent settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInstallAgent {
    /// Send the inventory right after a successful install.
    pub inventory_after_install: bool,
    /// Which machines postpone a restart the install needs: `never`,
    /// `servers`, `workstations`, `both`.
    pub postpone_restart: PostponeRestart,
    /// How long users are warned before the action after the countdown.
    pub countdown_seconds: u64,
    /// `restart` or `prompt`.
    pub after_countdown: AfterCountdown,
}

/// A software update package's user notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyNotification {
    pub prompt_user: bool,
    /// Users may postpone the installation by up to this long; absent: no
    /// postponing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_postpone_seconds: Option<u64>,
}

/// What a program of a software update package carries into policy
/// besides an ordinary program's settings (made by
/// `supdate::policy::policy_view`, never read from a manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateInstall {
    pub install_agent: PolicyInstallAgent,
    pub notification: PolicyNotification,
    pub notice: Option<String>,
}

/// The [`UpdateInstall`] of each software update program, by package and
/// program name.
pub type UpdateInstalls = BTreeMap<String, BTreeMap<String, UpdateInstall>>;

/// The catalog a scan program evaluates: `catalog` is a path inside the
/// program's content; `type` is `security` or `office`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyScan {
    pub catalog: String,
    #[serde(rename = "type")]
    pub catalog_type: crate::manifest::sync_host::CatalogType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRemoval {
    pub uninstall_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunFirst {
    /// Always given, also when it is the same package.
    pub package: String,
    pub program: String,
    pub always_run: bool,
}

/// What to download: `<url>/packages/<packageId>/versions/<version>.json`,
/// whose SHA-256 is `version`, then each file it lists by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyContent {
    pub package_id: String,
    pub version: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDistributionPoint {
    pub name: String,
    pub url: String,
    pub local: bool,
}

impl MachinePolicy {
    /// The canonical JSON the hash is taken over (and the body served).
    pub fn to_json(&self) -> Vec<u8> {
        // Our own types with string keys only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `sha256:<hex>` of [`MachinePolicy::to_json`]: the ETag.
    pub fn hash(&self) -> String {
        sha256_text(&Sha256::digest(self.to_json()))
    }

    /// The hash and the per-assignment fingerprints, for comparisons.
    pub fn digest(&self) -> PolicyDigest {
        let assignments = self
            .assignments
            .iter()
            .map(|a| {
                let mut hasher = Sha256::new();
                // Serializing our own types cannot fail.
                hasher.update(serde_json::to_vec(a).unwrap_or_default());
                for dep in dependency_chain(self, &a.program) {
                    hasher.update(serde_json::to_vec(dep).unwrap_or_default());
                }
                AssignmentDigest {
                    advertisement: Arc::from(a.advertisement.as_str()),
                    fingerprint: fingerprint(hasher),
                }
            })
            .collect();
        PolicyDigest {
            hash: self.hash(),
            assignments,
        }
    }
}

/// The programs of `program`'s run-first chain found in `policy.programs`,
/// sorted as `programs` is.
fn dependency_chain<'a>(
    policy: &'a MachinePolicy,
    program: &PolicyProgram,
) -> Vec<&'a PolicyProgram> {
    let mut out: Vec<&PolicyProgram> = Vec::new();
    let mut next = program.run_first.as_ref();
    while let Some(first) = next {
        let Some(dep) = policy
            .programs
            .iter()
            .find(|p| p.package == first.package && p.program == first.program)
        else {
            break;
        };
        if out.iter().any(|p| std::ptr::eq(*p, dep)) {
            break;
        }
        out.push(dep);
        next = dep.run_first.as_ref();
    }
    out.sort_by(|a, b| (&a.package, &a.program).cmp(&(&b.package, &b.program)));
    out
}

fn sha256_text(digest: &[u8]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

fn fingerprint(hasher: Sha256) -> [u8; 16] {
    let full = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The version of a machine's policy: unchanged hash, same version; changed
/// hash, the next one; a machine without a previous policy starts at 1.
pub fn next_version(previous: Option<(u64, &str)>, new_hash: &str) -> u64 {
    match previous {
        None => 1,
        Some((version, hash)) if hash == new_hash => version,
        Some((version, _)) => version.saturating_add(1),
    }
}

// ---------------------------------------------------------------------------
// The precomputed site.

/// Everything about the site that does not depend on the machine.
#[derive(Debug, Clone)]
pub struct PolicySite {
    site_code: Option<String>,
    client: ClientSettings,
    /// Enabled distribution points, by name.
    dps: Vec<SiteDp>,
    /// Every program of every package, by (package, program).
    programs: Vec<SiteProgram>,
    /// Every advertisement, by name.
    ads: Vec<SiteAd>,
    ad_index: HashMap<String, u32>,
    /// The serialized policy up to the assignments: `{"format":…,"client":{…},`.
    header: Vec<u8>,
}

#[derive(Debug, Clone)]
struct SiteDp {
    name: String,
    url: String,
    /// Parsed boundaries; unparsable ones (refused by validation) are left
    /// out.
    nets: Vec<Ipv4Net>,
    /// No boundaries: local to every client.
    everywhere: bool,
}

impl SiteDp {
    fn is_local(&self, addresses: &[Ipv4Addr]) -> bool {
        self.everywhere
            || self
                .nets
                .iter()
                .any(|net| addresses.iter().any(|a| net.contains(*a)))
    }
}

#[derive(Debug, Clone)]
struct SiteProgram {
    /// With `distribution_points` empty: they depend on the machine.
    template: PolicyProgram,
    /// Indices into `PolicySite::dps`, in name order.
    dps: Vec<u32>,
    /// Allowed platforms as a bit set; None: any.
    platforms: Option<u8>,
    /// Not disabled, and the content is known if the package has a source.
    runnable: bool,
    /// The run-first program, if it exists.
    first: Option<u32>,
    /// It names a run-first program that does not exist.
    first_missing: bool,
}

#[derive(Debug, Clone)]
struct SiteAd {
    name: Arc<str>,
    /// None: the advertisement yields no assignment anywhere.
    resolved: Option<ResolvedAd>,
}

#[derive(Debug, Clone)]
struct ResolvedAd {
    /// With the program's `distribution_points` empty.
    template: PolicyAssignment,
    program: u32,
    /// The run-first chain, sorted (program indices are in output order).
    deps: Vec<u32>,
    /// The platforms every program of the chain allows; None: any.
    platforms: Option<u8>,
    /// The DPs of the program and its chain, sorted, deduplicated.
    relevant_dps: Vec<u32>,
}

impl PolicySite {
    /// Resolves the site. `content` holds the content summary of each
    /// package with a source, by package name.
    pub fn new(desired: &Desired, content: &BTreeMap<String, ContentSummary>) -> PolicySite {
        PolicySite::with_updates(desired, content, &UpdateInstalls::new())
    }

    /// [`PolicySite::new`], with what the programs of software update
    /// packages carry besides an ordinary program's settings.
    pub fn with_updates(
        desired: &Desired,
        content: &BTreeMap<String, ContentSummary>,
        installs: &UpdateInstalls,
    ) -> PolicySite {
        let settings = desired
            .site
            .as_ref()
            .map(|s| s.spec.client_policy.clone())
            .unwrap_or_default();
        let defaults = ClientPolicySettings::default();
        let secs = |text: &str, default: &str| {
            crate::units::parse_duration(text)
                .or_else(|_| crate::units::parse_duration(default))
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let client = ClientSettings {
            polling_interval_seconds: secs(
                settings.polling_interval.as_str(),
                defaults.polling_interval.as_str(),
            ),
            jitter_seconds: secs(settings.jitter.as_str(), defaults.jitter.as_str()),
            heartbeat_interval_seconds: secs(
                settings.heartbeat_interval.as_str(),
                defaults.heartbeat_interval.as_str(),
            ),
        };
        let site_code = desired.site.as_ref().map(|s| s.spec.site_code.clone());

        let mut dps = Vec::new();
        let mut dp_index: HashMap<&str, u32> = HashMap::new();
        for (name, dp) in &desired.distribution_points {
            if !dp.spec.enabled {
                continue;
            }
            dp_index.insert(name.as_str(), dps.len() as u32);
            dps.push(SiteDp {
                name: name.clone(),
                url: dp.spec.url.clone(),
                nets: dp
                    .spec
                    .boundaries
                    .iter()
                    .filter_map(|b| b.parse().ok())
                    .collect(),
                everywhere: dp.spec.boundaries.is_empty(),
            });
        }

        // Programs in (package, program) order; a duplicate name keeps the
        // first (validation refuses duplicates).
        // (A set, not a scan of `keyed`: a site has tens of thousands of
        // programs.)
        let mut keyed: Vec<(&str, &Program)> = Vec::new();
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (package, object) in &desired.packages {
            for program in &object.spec.programs {
                if seen.insert((package.as_str(), program.name.as_str())) {
                    keyed.push((package.as_str(), program));
                }
            }
        }
        keyed.sort_by(|a, b| (a.0, a.1.name.as_str()).cmp(&(b.0, b.1.name.as_str())));
        let program_index: HashMap<(&str, &str), u32> = keyed
            .iter()
            .enumerate()
            .map(|(i, (p, q))| ((*p, q.name.as_str()), i as u32))
            .collect();
        let programs: Vec<SiteProgram> = keyed
            .iter()
            .map(|(package, program)| {
                let spec = &desired.packages[*package].spec;
                let has_source = spec.source.is_some();
                let content = if has_source {
                    content.get(*package).map(|c| PolicyContent {
                        package_id: crate::dp::library::package_id(package),
                        version: c.version.clone(),
                        files: c.files as u64,
                        bytes: c.bytes,
                    })
                } else {
                    None
                };
                let runnable = !program.disabled && (!has_source || content.is_some());
                let mut dps: Vec<u32> = if content.is_some() {
                    spec.distribution_points
                        .iter()
                        .filter_map(|d| dp_index.get(d.as_str()).copied())
                        .collect()
                } else {
                    Vec::new()
                };
                dps.sort_unstable();
                dps.dedup();
                let run_first = program
                    .run_another_program_first
                    .as_ref()
                    .map(|f| RunFirst {
                        package: f.package.clone().unwrap_or_else(|| package.to_string()),
                        program: f.program.clone(),
                        always_run: f.always_run,
                    });
                let first = run_first.as_ref().and_then(|f| {
                    program_index
                        .get(&(f.package.as_str(), f.program.as_str()))
                        .copied()
                });
                SiteProgram {
                    first_missing: run_first.is_some() && first.is_none(),
                    first,
                    platforms: platform_mask(&program.platforms),
                    runnable,
                    dps,
                    template: program_template(
                        package,
                        program,
                        run_first,
                        content,
                        installs.get(*package).and_then(|p| p.get(&program.name)),
                    ),
                }
            })
            .collect();

        let mut ads = Vec::with_capacity(desired.advertisements.len());
        let mut ad_index = HashMap::with_capacity(desired.advertisements.len());
        for (name, ad) in &desired.advertisements {
            let spec = &ad.spec;
            let resolved = program_index
                .get(&(spec.package.as_str(), spec.program.as_str()))
                .and_then(|&program| resolve_chain(&programs, program).map(|c| (program, c)))
                .map(|(program, (deps, platforms, relevant_dps))| ResolvedAd {
                    template: PolicyAssignment {
                        advertisement: name.clone(),
                        mandatory: !spec.schedule.is_empty(),
                        available_after: spec
                            .available_after
                            .as_ref()
                            .map(|t| canonical_time(t.as_str())),
                        expires_at: spec.expires_at.as_ref().map(|t| canonical_time(t.as_str())),
                        schedule: spec
                            .schedule
                            .iter()
                            .map(|a| PolicySchedule {
                                start: a.start.as_ref().map(|t| canonical_time(t.as_str())),
                                every_seconds: a.every.as_ref().and_then(|d| {
                                    crate::units::parse_duration(d.as_str())
                                        .ok()
                                        .map(|d| d.as_secs())
                                }),
                                event: a.event,
                            })
                            .collect(),
                        rerun: spec.rerun,
                        allow_users_to_run_independently: spec.allow_users_to_run_independently,
                        mandatory_over_slow_links: spec.mandatory_over_slow_links,
                        priority: spec.priority,
                        local_distribution_point: spec.local_distribution_point,
                        remote_distribution_point: spec.remote_distribution_point,
                        program: programs[program as usize].template.clone(),
                    },
                    program,
                    deps,
                    platforms,
                    relevant_dps,
                });
            ad_index.insert(name.clone(), ads.len() as u32);
            ads.push(SiteAd {
                name: Arc::from(name.as_str()),
                resolved,
            });
        }

        let mut site = PolicySite {
            site_code,
            client,
            dps,
            programs,
            ads,
            ad_index,
            header: Vec::new(),
        };
        site.header = site.make_header();
        site
    }

    /// `{"format":…,"client":{…},` — the serialized empty policy less its
    /// `"assignments":[],"programs":[]}`.
    fn make_header(&self) -> Vec<u8> {
        let empty = MachinePolicy {
            format: POLICY_FORMAT.into(),
            site_code: self.site_code.clone(),
            client: self.client.clone(),
            assignments: Vec::new(),
            programs: Vec::new(),
        };
        let mut json = empty.to_json();
        let tail = br#""assignments":[],"programs":[]}"#;
        assert!(json.ends_with(tail), "policy field order changed");
        json.truncate(json.len() - tail.len());
        json
    }

    /// The names of the advertisements, in order.
    pub fn advertisements(&self) -> impl Iterator<Item = &str> {
        self.ads.iter().map(|a| &*a.name)
    }

    /// Which enabled DPs are local to a machine with these addresses.
    fn local_dps(&self, addresses: &[Ipv4Addr]) -> Vec<bool> {
        self.dps.iter().map(|dp| dp.is_local(addresses)).collect()
    }

    /// The distribution points `dps` (in name order) for a machine: local
    /// ones first.
    fn dp_list(&self, dps: &[u32], local: &[bool]) -> Vec<PolicyDistributionPoint> {
        ordered_dps(dps, local)
            .map(|i| {
                let dp = &self.dps[i as usize];
                PolicyDistributionPoint {
                    name: dp.name.clone(),
                    url: dp.url.clone(),
                    local: local[i as usize],
                }
            })
            .collect()
    }

    fn render_program(&self, index: u32, local: &[bool]) -> PolicyProgram {
        let program = &self.programs[index as usize];
        let mut out = program.template.clone();
        out.distribution_points = self.dp_list(&program.dps, local);
        out
    }

    fn render_assignment(&self, ad: &ResolvedAd, local: &[bool]) -> PolicyAssignment {
        let mut out = ad.template.clone();
        out.program.distribution_points =
            self.dp_list(&self.programs[ad.program as usize].dps, local);
        out
    }
}

/// `dps` (in name order) with the local ones first.
fn ordered_dps<'a>(dps: &'a [u32], local: &'a [bool]) -> impl Iterator<Item = u32> + 'a {
    let is_local = move |i: &&u32| local[**i as usize];
    dps.iter()
        .filter(is_local)
        .chain(dps.iter().filter(move |i| !is_local(i)))
        .copied()
}

fn program_template(
    package: &str,
    program: &Program,
    run_first: Option<RunFirst>,
    content: Option<PolicyContent>,
    update: Option<&UpdateInstall>,
) -> PolicyProgram {
    PolicyProgram {
        package: package.to_string(),
        program: program.name.clone(),
        command_line: program.command_line.clone(),
        comment: program.comment.clone(),
        run_mode: program.run_mode,
        after_running: program.after_running,
        max_run_time_seconds: program
            .max_run_time
            .as_ref()
            .and_then(|d| crate::units::parse_duration(d.as_str()).ok())
            .map_or(DEFAULT_MAX_RUN_TIME_SECS, |d| d.as_secs()),
        estimated_disk_space_bytes: program
            .estimated_disk_space
            .as_ref()
            .and_then(|s| crate::units::parse_size(s.as_str()).ok()),
        can_run: program.can_run,
        run_with: program.run_with,
        allow_user_interaction: program.allow_user_interaction,
        drive_mode: program.drive_mode,
        drive_letter: program
            .drive_letter
            .as_ref()
            .map(|l| l.to_ascii_uppercase()),
        reconnect_at_logon: program.reconnect_at_logon,
        suppress_notifications: program.suppress_notifications,
        expedited: program.expedited,
        removal: program.removal.as_ref().map(|r| PolicyRemoval {
            uninstall_key: r.uninstall_key.clone(),
        }),
        run_first,
        content,
        distribution_points: Vec::new(),
        scan: program.scan.as_ref().map(|s| PolicyScan {
            catalog: s.catalog.clone(),
            catalog_type: s.catalog_type,
        }),
        install_agent: update.map(|u| u.install_agent.clone()),
        notification: update.map(|u| u.notification.clone()),
        notice: update.and_then(|u| u.notice.clone()),
    }
}

/// Follows `program`'s run-first chain: None when some program of it is
/// not runnable, missing, or the chain loops; else the chain (sorted), the
/// platforms all allow, and the DPs of all.
#[allow(clippy::type_complexity)]
fn resolve_chain(
    programs: &[SiteProgram],
    program: u32,
) -> Option<(Vec<u32>, Option<u8>, Vec<u32>)> {
    let mut deps = Vec::new();
    let mut platforms: Option<u8> = None;
    let mut relevant = Vec::new();
    let mut current = program;
    loop {
        let p = &programs[current as usize];
        if !p.runnable || p.first_missing {
            return None;
        }
        platforms = match (platforms, p.platforms) {
            (None, x) | (x, None) => x,
            (Some(a), Some(b)) => Some(a & b),
        };
        relevant.extend_from_slice(&p.dps);
        match p.first {
            None => break,
            Some(next) => {
                if next == program || deps.contains(&next) {
                    return None;
                }
                deps.push(next);
                current = next;
            }
        }
    }
    deps.sort_unstable();
    relevant.sort_unstable();
    relevant.dedup();
    Some((deps, platforms, relevant))
}

// ---------------------------------------------------------------------------
// Platforms.

fn platform_bit(p: Platform) -> u8 {
    1 << match p {
        Platform::X86Windows2000 => 0,
        Platform::X86WindowsXp => 1,
        Platform::X86WindowsServer2003 => 2,
        Platform::X64WindowsXp => 3,
        Platform::X64WindowsServer2003 => 4,
        Platform::Ia64WindowsServer2003 => 5,
    }
}

/// None: any platform (the list is empty).
fn platform_mask(platforms: &[Platform]) -> Option<u8> {
    if platforms.is_empty() {
        None
    } else {
        Some(platforms.iter().fold(0, |m, p| m | platform_bit(*p)))
    }
}

/// The platforms the machine may be on: one, two (an x64 5.2 machine of
/// unknown type) or none (unknown facts).
pub fn machine_platforms(machine: &Machine) -> Vec<Platform> {
    let mask = machine_platform_mask(machine);
    ALL_PLATFORMS
        .into_iter()
        .filter(|p| mask & platform_bit(*p) != 0)
        .collect()
}

const ALL_PLATFORMS: [Platform; 6] = [
    Platform::X86Windows2000,
    Platform::X86WindowsXp,
    Platform::X86WindowsServer2003,
    Platform::X64WindowsXp,
    Platform::X64WindowsServer2003,
    Platform::Ia64WindowsServer2003,
];

fn machine_platform_mask(machine: &Machine) -> u8 {
    let Some(arch) = machine.architecture.as_deref() else {
        return 0;
    };
    let Some(version) = machine.os.version.as_deref() else {
        return 0;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return 0;
    };
    let arch = arch.to_ascii_lowercase();
    let os_type = machine.os.os_type.as_deref();
    let bits = |ps: &[Platform]| ps.iter().fold(0, |m, p| m | platform_bit(*p));
    match (arch.as_str(), major, minor) {
        ("x86", 5, 0) => bits(&[Platform::X86Windows2000]),
        ("x86", 5, 1) => bits(&[Platform::X86WindowsXp]),
        ("x86", 5, 2) => bits(&[Platform::X86WindowsServer2003]),
        ("x64", 5, 2) => match os_type {
            Some("workstation") => bits(&[Platform::X64WindowsXp]),
            Some("server" | "domainController") => bits(&[Platform::X64WindowsServer2003]),
            _ => bits(&[Platform::X64WindowsXp, Platform::X64WindowsServer2003]),
        },
        ("ia64", 5, 2) => bits(&[Platform::Ia64WindowsServer2003]),
        _ => 0,
    }
}

/// Whether a machine that may be on `machine` (a bit set) is for certain on
/// one of `allowed`.
fn platform_allows(allowed: Option<u8>, machine: u8) -> bool {
    match allowed {
        None => true,
        Some(allowed) => machine != 0 && machine & !allowed == 0,
    }
}

// ---------------------------------------------------------------------------
// One machine.

/// The policy of `machine`, targeted by the advertisements named in
/// `advertisements` (any order; unknown names and duplicates are ignored).
pub fn machine_policy(
    site: &PolicySite,
    machine: &Machine,
    advertisements: &[&str],
) -> MachinePolicy {
    let mut indices: Vec<u32> = advertisements
        .iter()
        .filter_map(|name| site.ad_index.get(*name).copied())
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let local = site.local_dps(&machine.ip.addresses);
    let platforms = machine_platform_mask(machine);
    let mut assignments = Vec::new();
    let mut deps = Vec::new();
    for i in indices {
        let Some(ad) = &site.ads[i as usize].resolved else {
            continue;
        };
        if !platform_allows(ad.platforms, platforms) {
            continue;
        }
        assignments.push(site.render_assignment(ad, &local));
        deps.extend_from_slice(&ad.deps);
    }
    deps.sort_unstable();
    deps.dedup();
    let programs = deps
        .into_iter()
        .map(|d| site.render_program(d, &local))
        .collect();
    MachinePolicy {
        format: POLICY_FORMAT.into(),
        site_code: site.site_code.clone(),
        client: site.client.clone(),
        assignments,
        programs,
    }
}
