use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CanRun, DurationText, Interval, Priority, RepoPath, SizeText};
use super::sync_host::CatalogType;

/// A package: source content distributed to distribution points, and the
/// programs that run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PackageSpec {
    /// The software's version, as shown to users and in reports.
    #[serde(default)]
    pub version: String,
    /// Who makes the software.
    #[serde(default)]
    pub manufacturer: String,
    /// The software's language, e.g. `ENU`.
    #[serde(default)]
    pub language: String,
    /// What the package is for.
    #[serde(default)]
    pub comment: String,
    /// The source directory, relative to the repository root. None: a
    /// package without content (its programs run commands already present
    /// on the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RepoPath>,
    /// Sending priority: higher-priority packages reach distribution points
    /// first.
    #[serde(default)]
    pub priority: Priority,
    /// The distribution points that hold this package's content.
    #[serde(default)]
    pub distribution_points: Vec<String>,
    /// Refresh the distribution points from the source on this schedule,
    /// even when no manifest changed (SMS's "Update distribution points on
    /// a schedule").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_distribution_points: Option<Interval>,
    /// The programs of the package.
    #[serde(default)]
    pub programs: Vec<Program>,
}

/// A program: a command line and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Program {
    /// Unique within the package.
    pub name: String,
    /// The command line, run in the package's content directory without a
    /// shell (`docs/agent.md`). Its program is a file of the package or a
    /// name on `PATH` (no `/`); a path with `/` is relative to the package
    /// directory, so an absolute path or a `..` component is refused, as is
    /// an unterminated quote.
    pub command_line: String,
    /// What the program does, shown to users.
    #[serde(default)]
    pub comment: String,
    /// The window the program runs in.
    #[serde(default)]
    pub run_mode: RunMode,
    /// What happens after the program ends.
    #[serde(default)]
    pub after_running: AfterRunning,
    /// Estimated disk space the program needs; none: unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_disk_space: Option<SizeText>,
    /// The program is stopped after this long; none: unknown, which the
    /// agent treats as 12 hours (SMS's 720 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_time: Option<DurationText>,
    /// When the program may run, relative to user logons.
    #[serde(default)]
    pub can_run: CanRun,
    /// The rights the program runs with.
    #[serde(default)]
    pub run_with: RunWith,
    /// With administrative rights: let the logged-on user interact with the
    /// program's windows.
    #[serde(default)]
    pub allow_user_interaction: bool,
    /// How the program reaches the distribution point's content.
    #[serde(default)]
    pub drive_mode: DriveMode,
    /// The drive letter for `driveMode: specificDriveLetter`, e.g. `Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_letter: Option<String>,
    /// Reconnect to the distribution point at logon.
    #[serde(default)]
    pub reconnect_at_logon: bool,
    /// Another program that runs before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_another_program_first: Option<ProgramDependency>,
    /// Suppress the program's notifications (countdown, start) on the client.
    #[serde(default)]
    pub suppress_notifications: bool,
    /// An expedited program runs as soon as it is received; advertise it to
    /// pre-production (test) collections only.
    #[serde(default)]
    pub expedited: bool,
    /// Client platforms the program may run on; empty: any platform.
    #[serde(default)]
    pub platforms: Vec<Platform>,
    /// Disable the program on every client where it is advertised, without
    /// deleting its advertisements.
    #[serde(default)]
    pub disabled: bool,
    /// Remove the software when the program is no longer advertised to the
    /// machine, with the uninstall registry key's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<Removal>,
    /// An inventory program that scans for updates: the agent evaluates
    /// this catalog, shipped in the package's content, against the
    /// machine's scan facts and reports the machine's patch states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ProgramScan>,
}

/// What an inventory (scan) program scans with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProgramScan {
    /// The catalog file, relative to the package's source directory, e.g.
    /// `mssecure.xml`.
    pub catalog: String,
    /// The catalog's type: `security` (MSSecure.XML) or `office` (the
    /// Office update database).
    #[serde(rename = "type")]
    pub catalog_type: CatalogType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProgramDependency {
    /// The package of the program to run first; none: this package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The program to run first, by name.
    pub program: String,
    /// Run it even if it already ran successfully on the machine.
    #[serde(default)]
    pub always_run: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Removal {
    /// The key under `HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall`.
    pub uninstall_key: String,
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
pub enum RunMode {
    #[default]
    Normal,
    Minimized,
    Maximized,
    Hidden,
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
pub enum AfterRunning {
    /// No action required.
    #[default]
    NoAction,
    /// The agent restarts the computer.
    Restart,
    /// The program restarts the computer itself.
    ProgramRestarts,
    /// The agent logs the user off.
    LogOff,
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
pub enum RunWith {
    /// The logged-on user's rights.
    #[default]
    UserRights,
    /// Administrative rights (the agent's own account).
    AdministrativeRights,
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
pub enum DriveMode {
    /// Runs from a UNC path or URL.
    #[default]
    Unc,
    /// Needs any drive letter mapped to the content.
    AnyDriveLetter,
    /// Needs the drive letter given in `driveLetter`.
    SpecificDriveLetter,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Platform {
    #[serde(rename = "x86-windows-2000")]
    X86Windows2000,
    #[serde(rename = "x86-windows-xp")]
    X86WindowsXp,
    #[serde(rename = "x86-windows-server-2003")]
    X86WindowsServer2003,
    #[serde(rename = "x64-windows-xp")]
    X64WindowsXp,
    #[serde(rename = "x64-windows-server-2003")]
    X64WindowsServer2003,
    #[serde(rename = "ia64-windows-server-2003")]
    Ia64WindowsServer2003,
}
