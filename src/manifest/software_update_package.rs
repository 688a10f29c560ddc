use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::advertisement::Assignment;
use super::common::{DurationText, Priority, RepoPath, TimeText};
use super::sync_host::CatalogType;

/// A software update package: what SMS's Distribute Software Updates wizard
/// makes, one field per page of the wizard. The package's name is
/// `metadata.name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SoftwareUpdatePackageSpec {
    /// Which catalog the updates come from.
    pub update_type: CatalogType,
    /// The organization shown to users as the package's source.
    #[serde(default)]
    pub from: String,
    /// What the package is for.
    #[serde(default)]
    pub comment: String,
    /// An RTF notice shown to users, relative to the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<RepoPath>,
    /// The inventory tool program that scans clients before and after
    /// installation.
    pub inventory_program: ProgramRef,
    /// The selected updates.
    pub updates: Vec<UpdateSelection>,
    /// The source directory that holds (or receives) the update files.
    pub source: RepoPath,
    /// `patchops updates download` fetches the update files from the
    /// catalog's location and records them verified; without it the files
    /// are copied into `source` by hand (and recorded by the same command).
    #[serde(default = "super::default_true")]
    pub download: bool,
    /// Require a valid Authenticode signature on every update file (PE
    /// files; Windows Installer files cannot be checked and stay not ready)
    /// by a publisher `trustedSigners` trusts, as well as the SHA-256
    /// recorded at download.
    #[serde(default = "super::default_true")]
    pub verify_signature: bool,
    /// The certificates whose signatures `verifySignature` accepts: a PEM
    /// file, relative to the repository root, of publisher certificates or
    /// the CAs that issue them. Required when `verifySignature` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_signers: Option<RepoPath>,
    /// Sending priority.
    #[serde(default)]
    pub priority: Priority,
    /// The distribution points that hold the package's content.
    #[serde(default)]
    pub distribution_points: Vec<String>,
    /// The installation agent's settings.
    #[serde(default)]
    pub install_agent: InstallAgent,
    /// What users are told, and whether they may postpone.
    #[serde(default)]
    pub notification: Notification,
    /// Office updates: administrative or client installs and Ohotfix
    /// settings. Only for `updateType: office`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<OfficeSettings>,
    /// An advertisement of the package's installation program, made with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertisement: Option<UpdateAdvertisement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProgramRef {
    /// The inventory tool's package.
    pub package: String,
    /// The scan program of that package.
    pub program: String,
}

/// One selected update: exactly one of `bulletin` (a bulletin, narrowed by
/// Q numbers, products and language), `patch` (one patch file by its
/// catalog name) or `missingIn` (every update missing on a collection's
/// members, from their stored scan results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSelection {
    /// The bulletin, e.g. `MS04-011`; it must be in the synced catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulletin: Option<String>,
    /// A patch by its name in the catalog (MSSecure.XML's `PatchName`, e.g.
    /// `Q299687_W2K_SP3_x86_en.EXE`) or its file name; it must be in the
    /// synced catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Every update missing on at least one member of a collection, as
    /// the members' stored scan results say when the package is planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_in: Option<MissingIn>,
    /// Only these Q/KB numbers of the bulletin (e.g. `835732`); empty: all.
    /// Only with `bulletin`.
    #[serde(default)]
    pub q_numbers: Vec<String>,
    /// Only the patches for these products; empty: all.
    #[serde(default)]
    pub products: Vec<String>,
    /// Only the patches in this language, e.g. `ENU`; none: every language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The command line that installs the update; none: the default for
    /// its installer (security: `/quiet /norestart` for `KB…` packages,
    /// `-q -z` for `Q…` hotfixes, `/q:a /r:n` for IExpress packages;
    /// Office client installs: `ohotfix.exe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// The program name for this update in the package; none: the bulletin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_name: Option<String>,
}

/// "All missing in collection X".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MissingIn {
    /// The collection whose members' missing updates are selected.
    pub collection: String,
    /// Only bulletins of these severities (as the catalog rates them);
    /// empty: every severity, also unrated bulletins.
    #[serde(default)]
    pub severities: Vec<UpdateSeverity>,
}

/// A bulletin's severity rating.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum UpdateSeverity {
    Critical,
    Important,
    Moderate,
    Low,
}

impl UpdateSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateSeverity::Critical => "critical",
            UpdateSeverity::Important => "important",
            UpdateSeverity::Moderate => "moderate",
            UpdateSeverity::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallAgent {
    /// Run the inventory tool right after installing, so compliance is
    /// current.
    #[serde(default = "super::default_true")]
    pub inventory_after_install: bool,
    /// A named settings template the values were taken from, recorded for
    /// reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_template: Option<String>,
    /// Which machines may postpone the restart an update needs.
    #[serde(default)]
    pub postpone_restart: PostponeRestart,
    /// Install without user interaction.
    #[serde(default = "super::default_true")]
    pub unattended: bool,
    /// How long users are warned before the action after the countdown.
    #[serde(default = "default_countdown")]
    pub countdown: DurationText,
    /// What happens when the countdown ends.
    #[serde(default)]
    pub after_countdown: AfterCountdown,
    /// The longest one update may run before it is stopped.
    #[serde(default = "default_max_run_time")]
    pub max_run_time: DurationText,
}

impl Default for InstallAgent {
    fn default() -> Self {
        InstallAgent {
            inventory_after_install: true,
            reference_template: None,
            postpone_restart: PostponeRestart::default(),
            unattended: true,
            countdown: default_countdown(),
            after_countdown: AfterCountdown::default(),
            max_run_time: default_max_run_time(),
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PostponeRestart {
    /// Every machine restarts when an update needs it.
    #[default]
    Never,
    /// Servers postpone the restart; workstations restart.
    Servers,
    /// Workstations postpone the restart; servers restart.
    Workstations,
    /// Every machine postpones the restart.
    Both,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AfterCountdown {
    /// Restart the machine.
    #[default]
    Restart,
    /// Ask the user to restart.
    Prompt,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notification {
    /// Tell the logged-on user before installing.
    #[serde(default)]
    pub prompt_user: bool,
    /// Let the user postpone the installation by up to this long; none: no
    /// postponing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_postpone: Option<DurationText>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OfficeSettings {
    /// Whether the updates patch an administrative installation point or
    /// the clients' own installations.
    pub install_type: OfficeInstallType,
    /// Ohotfix.ini settings for client installs.
    #[serde(default)]
    pub ohotfix: Ohotfix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OfficeInstallType {
    /// Patch an administrative installation point; clients reinstall from it.
    Administrative,
    /// Patch each client's own installation (with Ohotfix).
    Client,
}

/// The `[OHotfix]` section of Ohotfix.ini.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ohotfix {
    /// `ShowSuccessDialog`: show a dialog after a successful install.
    #[serde(default)]
    pub show_success_dialog: bool,
    /// `OHotfixUILevel`: Ohotfix's own user interface.
    #[serde(default)]
    pub ohotfix_ui_level: UiLevel,
    /// `MsiUILevel`: Windows Installer's user interface.
    #[serde(default)]
    pub msi_ui_level: UiLevel,
}

impl Default for Ohotfix {
    fn default() -> Self {
        Ohotfix {
            show_success_dialog: false,
            ohotfix_ui_level: UiLevel::Q,
            msi_ui_level: UiLevel::Q,
        }
    }
}

/// Windows Installer UI levels as Ohotfix.ini writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UiLevel {
    /// Quiet: no user interface.
    #[default]
    Q,
    /// No user interface.
    Qn,
    /// Basic user interface (progress only).
    Qb,
    /// Reduced user interface.
    Qr,
    /// Full user interface.
    Qf,
}

/// The advertisement the wizard can create for the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateAdvertisement {
    /// The collection the updates are offered to.
    pub collection: String,
    /// When it becomes available; none: as soon as applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_after: Option<TimeText>,
    /// When it expires; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<TimeText>,
    /// Mandatory assignments; none: optional.
    #[serde(default)]
    pub schedule: Vec<Assignment>,
    /// Offer it to subcollections too.
    #[serde(default = "super::default_true")]
    pub include_subcollections: bool,
}

fn default_countdown() -> DurationText {
    DurationText("5m".into())
}

fn default_max_run_time() -> DurationText {
    DurationText("2h".into())
}
