//! Software update packages in client policy: a Ready package with an
//! `advertisement` reaches clients as a package of its own (same name,
//! source, distribution points and content version) whose programs install
//! the updates one after another (each runs the one before it first), and
//! an advertisement (same name) of the last program to the package's
//! collection. The installation agent's `unattended` and `maxRunTime` set
//! the programs' run mode and run time; its other settings and the
//! notification go with every program (`installAgent`, `notification`),
//! the notice's text with the advertised one. The view is made for policy only;
//! plans and the state keep the software update package as it is.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::content::ContentSummary;
use crate::manifest::software_update_package::SoftwareUpdatePackageSpec;
use crate::model::{Desired, Object};
use crate::policy::{
    PolicyInstallAgent, PolicyNotification, PolicySite, UpdateInstall, UpdateInstalls,
};

/// What a Ready package was built into: its content version and programs.
/// Part of the package's canonical (stored) form, so the site server can
/// make its policy without the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBuild {
    pub version: String,
    pub files: usize,
    pub bytes: u64,
    pub programs: Vec<UpdateProgram>,
    /// The notice's plain text, read from its RTF file when planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateProgram {
    pub name: String,
    pub command_line: String,
}

/// A site as client policy sees it: software update packages made packages
/// and advertisements, and what their programs carry besides.
pub struct PolicyView<'a> {
    pub site: Cow<'a, Desired>,
    pub content: Cow<'a, BTreeMap<String, ContentSummary>>,
    pub installs: UpdateInstalls,
}

impl PolicyView<'_> {
    pub fn policy_site(&self) -> PolicySite {
        PolicySite::with_updates(&self.site, &self.content, &self.installs)
    }
}

/// `desired` and `content` with each built, advertised software update
/// package added as a package and an advertisement. A name already taken
/// by a package or an advertisement is left out.
pub fn policy_view<'a>(
    desired: &'a Desired,
    content: &'a BTreeMap<String, ContentSummary>,
    builds: &BTreeMap<String, UpdateBuild>,
) -> PolicyView<'a> {
    let eligible: Vec<(&String, &UpdateBuild)> = desired
        .software_update_packages
        .iter()
        .filter(|(name, sup)| {
            sup.spec.advertisement.is_some()
                && !desired.packages.contains_key(*name)
                && !desired.advertisements.contains_key(*name)
        })
        .filter_map(|(name, _)| builds.get(name).map(|b| (name, b)))
        .filter(|(_, b)| !b.programs.is_empty())
        .collect();
    if eligible.is_empty() {
        return PolicyView {
            site: Cow::Borrowed(desired),
            content: Cow::Borrowed(content),
            installs: UpdateInstalls::new(),
        };
    }
    let mut view = desired.clone();
    let mut view_content = content.clone();
    let mut installs = UpdateInstalls::new();
    for (name, build) in eligible {
        let sup = &desired.software_update_packages[name];
        let spec = &sup.spec;
        let Some(ad) = &spec.advertisement else {
            continue;
        };
        let programs: Vec<serde_json::Value> = build
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut program = serde_json::json!({
                    "name": p.name,
                    "commandLine": p.command_line,
                    "comment": format!("Installs {} from software update package {name}.", p.name),
                    "runMode": if spec.install_agent.unattended { "hidden" } else { "normal" },
                    "canRun": "whetherOrNotUserLoggedOn",
                    "runWith": "administrativeRights",
                    "maxRunTime": spec.install_agent.max_run_time.as_str(),
                });
                if i > 0 {
                    program["runAnotherProgramFirst"] =
                        serde_json::json!({ "program": build.programs[i - 1].name });
                }
                program
            })
            .collect();
        let package = serde_json::json!({
            "version": build.version.get(..12).unwrap_or(&build.version),
            "manufacturer": spec.from,
            "comment": spec.comment,
            "source": spec.source.as_str(),
            "priority": spec.priority,
            "distributionPoints": spec.distribution_points,
            "programs": programs,
        });
        let advertisement = serde_json::json!({
            "package": name,
            "program": build.programs.last().map(|p| p.name.clone()),
            "collection": ad.collection,
            "includeSubcollections": ad.include_subcollections,
            "availableAfter": ad.available_after,
            "expiresAt": ad.expires_at,
            "schedule": ad.schedule,
            "priority": spec.priority,
        });
        let (Ok(package), Ok(advertisement)) = (
            serde_json::from_value::<crate::manifest::package::PackageSpec>(package),
            serde_json::from_value(strip_nulls(advertisement)),
        ) else {
            continue;
        };
        let last = package.programs.len().saturating_sub(1);
        let programs = installs.entry(name.clone()).or_default();
        for (i, program) in package.programs.iter().enumerate() {
            let notice = if i == last {
                build.notice.clone()
            } else {
                None
            };
            programs.insert(program.name.clone(), update_install(spec, notice));
        }
        view.packages.insert(
            name.clone(),
            Object {
                metadata: sup.metadata.clone(),
                spec: package,
                origin: sup.origin.clone(),
            },
        );
        view.advertisements.insert(
            name.clone(),
            Object {
                metadata: sup.metadata.clone(),
                spec: advertisement,
                origin: sup.origin.clone(),
            },
        );
        view_content.insert(
            name.clone(),
            ContentSummary {
                version: build.version.clone(),
                files: build.files,
                bytes: build.bytes,
            },
        );
    }
    PolicyView {
        site: Cow::Owned(view),
        content: Cow::Owned(view_content),
        installs,
    }
}

/// The installation agent settings and notification of `spec` as policy
/// carries them.
fn update_install(spec: &SoftwareUpdatePackageSpec, notice: Option<String>) -> UpdateInstall {
    let secs = |d: &crate::manifest::common::DurationText| {
        crate::units::parse_duration(d.as_str()).map_or(0, |d| d.as_secs())
    };
    let agent = &spec.install_agent;
    UpdateInstall {
        install_agent: PolicyInstallAgent {
            inventory_after_install: agent.inventory_after_install,
            postpone_restart: agent.postpone_restart,
            countdown_seconds: secs(&agent.countdown),
            after_countdown: agent.after_countdown,
        },
        notification: PolicyNotification {
            prompt_user: spec.notification.prompt_user,
            allow_postpone_seconds: spec.notification.allow_postpone.as_ref().map(secs),
        },
        notice,
    }
}

fn strip_nulls(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(map) = v.as_object_mut() {
        map.retain(|_, x| !x.is_null());
    }
    v
}
