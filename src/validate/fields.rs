//! What each value of one manifest means: names, durations, times, sizes,
//! queries, subnets, URLs, repository paths and the rules that tie fields of
//! the same object together. Nothing here looks at other objects.

use std::collections::BTreeSet;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Severity};
use crate::manifest::advertisement::Assignment;
use crate::manifest::common::{DurationText, Interval, SecretRef, TimeText};
use crate::manifest::package::{DriveMode, Program, RunWith};
use crate::manifest::software_update_package::UpdateSelection;
use crate::manifest::sync_host::Proxy;
use crate::manifest::{collection::MembershipRule, Manifest, Spec, *};
use crate::model::PROTECT_ANNOTATION;
use crate::units::{self, ScheduleTime, UrlProblem};
use crate::yaml::FieldPath;

use super::{repo_path, Locator};

/// Longest object name; SMS's own limit for package and collection names
/// was lower, names this long are a mistake.
const MAX_NAME_CHARS: usize = 256;

struct Ctx<'a, 'b> {
    at: &'a Locator<'b>,
    repo: &'a Path,
    out: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_, '_> {
    fn error(
        &mut self,
        code: &'static str,
        path: &FieldPath,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.out
            .push(self.at.at(Severity::Error, code, path, message));
        self.out.last_mut().expect("just pushed")
    }

    fn duration(&mut self, path: &FieldPath, value: &DurationText) {
        if let Err(e) = units::parse_duration(value.as_str()) {
            self.error(
                "invalid-duration",
                path,
                format!("invalid duration `{}`: {e}", value.as_str()),
            );
        }
    }

    fn time(&mut self, path: &FieldPath, value: &TimeText) -> Option<ScheduleTime> {
        match units::parse_time(value.as_str()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(
                    "invalid-time",
                    path,
                    format!("invalid time `{}`: {e}", value.as_str()),
                );
                None
            }
        }
    }

    fn interval(&mut self, path: &FieldPath, interval: &Interval) {
        self.duration(&path.key("every"), &interval.every);
        if let Some(start) = &interval.start {
            self.time(&path.key("start"), start);
        }
    }

    fn host(&mut self, path: &FieldPath, value: &str) {
        if let Err(e) = units::check_host_name(value) {
            self.error(
                "invalid-value",
                path,
                format!("invalid host name `{value}`: {e}"),
            );
        }
    }

    fn url(&mut self, path: &FieldPath, value: &str, schemes: &[&str]) {
        match units::check_url(value, schemes) {
            Ok(()) => {}
            Err(UrlProblem::Malformed(e)) => {
                self.error("invalid-url", path, format!("invalid URL: {e}"));
            }
            Err(UrlProblem::Credentials) => {
                // The URL is not repeated: it holds a secret.
                self.error("literal-secret", path, "the URL contains credentials; secrets may only be referenced").help = Some(
                    "remove `user:password@` from the URL and give the credentials by reference (`username` and `passwordFrom`)".into(),
                );
            }
        }
    }

    /// A repository path; `must_exist` names what it must be when it has to
    /// exist already.
    fn repo_path(&mut self, path: &FieldPath, value: &str, must_exist: Option<Expect>) {
        match repo_path(self.repo, value) {
            Err(e) => {
                self.error("path-escapes", path, format!("invalid path `{value}`: {e}"))
                    .help = Some("give a path relative to the repository root, inside it".into());
            }
            Ok(full) => match must_exist {
                None => {}
                Some(Expect::Dir) if !full.is_dir() => {
                    self.error("missing-path", path, format!("source directory `{value}` does not exist"))
                        .help = Some("create it in the repository, or fix the path (it is relative to the repository root)".into());
                }
                Some(Expect::File) if !full.is_file() => {
                    self.error("missing-path", path, format!("file `{value}` does not exist"))
                        .help = Some("add the file to the repository, or fix the path (it is relative to the repository root)".into());
                }
                Some(_) => {}
            },
        }
    }

    fn secret_ref(&mut self, path: &FieldPath, secret: &SecretRef) {
        match secret {
            SecretRef::Env(name) => {
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.error(
                        "invalid-value",
                        &path.key("env"),
                        "expected an environment variable name (letters, digits and `_`)",
                    );
                }
            }
            SecretRef::File(file) if file.trim().is_empty() => {
                self.error(
                    "invalid-value",
                    &path.key("file"),
                    "expected the path of the file that holds the secret",
                );
            }
            SecretRef::File(_) => {}
        }
    }

    fn names(&mut self, path: &FieldPath, names: &[String], what: &str) {
        let mut seen = BTreeSet::new();
        for (i, name) in names.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                self.error(
                    "duplicate-name",
                    &path.index(i),
                    format!("{what} `{name}` is listed twice"),
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Dir,
    File,
}

pub(super) fn check(manifest: &Manifest, at: &Locator<'_>, repo: &Path, out: &mut Vec<Diagnostic>) {
    let mut cx = Ctx { at, repo, out };
    metadata(&mut cx, manifest);
    let spec = FieldPath::root("spec");
    match &*manifest.spec {
        Spec::Site(s) => site(&mut cx, &spec, s),
        Spec::DistributionPoint(s) => distribution_point(&mut cx, &spec, s),
        Spec::Collection(s) => collection(&mut cx, &spec, s),
        Spec::Package(s) => package(&mut cx, &spec, s),
        Spec::Advertisement(s) => advertisement(&mut cx, &spec, s),
        Spec::SyncHost(s) => sync_host(&mut cx, &spec, s),
        Spec::SoftwareUpdatePackage(s) => software_update_package(&mut cx, &spec, s),
    }
}

fn metadata(cx: &mut Ctx<'_, '_>, manifest: &Manifest) {
    let name = &manifest.metadata.name;
    let path = FieldPath::root("metadata").key("name");
    if name.trim().is_empty() {
        cx.error("invalid-name", &path, "the name is empty");
    } else if name.trim() != name {
        cx.error(
            "invalid-name",
            &path,
            format!("the name `{name}` starts or ends with white space"),
        );
    } else if name.chars().any(char::is_control) {
        cx.error(
            "invalid-name",
            &path,
            "the name contains control characters (tabs, newlines)",
        );
    } else if name.chars().count() > MAX_NAME_CHARS {
        cx.error(
            "invalid-name",
            &path,
            format!("the name is longer than {MAX_NAME_CHARS} characters"),
        );
    }
    if let Some(value) = manifest.metadata.annotations.get(PROTECT_ANNOTATION) {
        if value != "true" && value != "false" {
            let p = FieldPath::root("metadata")
                .key("annotations")
                .key(PROTECT_ANNOTATION);
            cx.error(
                "invalid-value",
                &p,
                format!("`{PROTECT_ANNOTATION}` is `\"true\"` or `\"false\"`, found `{value}`"),
            );
        }
    }
}

fn site_code(cx: &mut Ctx<'_, '_>, path: &FieldPath, code: &str) {
    if code.len() != 3
        || !code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        cx.error("invalid-value", path, format!("invalid site code `{code}`: expected three upper-case letters or digits, e.g. `LAB`"));
    }
}

fn site(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &SiteSpec) {
    site_code(cx, &spec.key("siteCode"), &s.site_code);
    if let Some(parent) = &s.parent_site_code {
        site_code(cx, &spec.key("parentSiteCode"), parent);
        if parent == &s.site_code {
            cx.error(
                "invalid-value",
                &spec.key("parentSiteCode"),
                "a site cannot be its own parent",
            );
        }
    }
    cx.host(&spec.key("siteServer"), &s.site_server);
    let policy = spec.key("clientPolicy");
    cx.duration(
        &policy.key("pollingInterval"),
        &s.client_policy.polling_interval,
    );
    cx.duration(&policy.key("jitter"), &s.client_policy.jitter);
    cx.duration(
        &policy.key("heartbeatInterval"),
        &s.client_policy.heartbeat_interval,
    );
    if let (Ok(poll), Ok(jitter)) = (
        units::parse_duration(s.client_policy.polling_interval.as_str()),
        units::parse_duration(s.client_policy.jitter.as_str()),
    ) {
        if jitter >= poll {
            cx.error(
                "invalid-value",
                &policy.key("jitter"),
                "the jitter must be shorter than the polling interval",
            );
        }
    }
}

fn distribution_point(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &DistributionPointSpec) {
    if s.path.trim().is_empty() {
        cx.error(
            "invalid-value",
            &spec.key("path"),
            "expected the content library's directory",
        );
    }
    cx.url(&spec.key("url"), &s.url, &["http", "https"]);
    for (i, boundary) in s.boundaries.iter().enumerate() {
        if let Err(e) = boundary.parse::<crate::query::Ipv4Net>() {
            cx.error(
                "invalid-value",
                &spec.key("boundaries").index(i),
                format!("invalid boundary `{boundary}`: {e}"),
            );
        }
    }
    cx.names(&spec.key("boundaries"), &s.boundaries, "boundary");
    if s.max_concurrent_transfers == 0 {
        cx.error(
            "invalid-value",
            &spec.key("maxConcurrentTransfers"),
            "expected at least 1",
        );
    }
    let every = s.validation.every.as_str();
    if let Err(e) = units::parse_duration(every) {
        cx.error(
            "invalid-duration",
            &spec.key("validation").key("every"),
            format!("invalid duration `{every}`: {e}"),
        )
        .help = Some("e.g. `7d`; to validate on no schedule, write `enabled: false`".into());
    }
}

fn collection(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &CollectionSpec) {
    for (i, rule) in s.membership.iter().enumerate() {
        let path = spec.key("membership").index(i);
        match rule {
            MembershipRule::Query(q) => {
                if let Err(e) = crate::query::parse(q.as_str()) {
                    let d = cx.at.inside(
                        "invalid-query",
                        &path.key("query"),
                        e.offset,
                        e.len,
                        format!("invalid query: {}", e.message),
                    );
                    let d = match (e.help, d.help.clone()) {
                        (Some(h), Some(position)) => d.with_help(format!("{h}; {position}")),
                        (Some(h), None) => d.with_help(h),
                        (None, _) => d,
                    };
                    cx.out.push(d);
                }
            }
            MembershipRule::Direct(machines) => {
                for (j, machine) in machines.iter().enumerate() {
                    cx.host(&path.key("direct").index(j), machine);
                }
                cx.names(&path.key("direct"), machines, "machine");
            }
            MembershipRule::Include(names) | MembershipRule::Exclude(names) => {
                let key = if matches!(rule, MembershipRule::Include(_)) {
                    "include"
                } else {
                    "exclude"
                };
                if names.is_empty() {
                    cx.error(
                        "invalid-value",
                        &path.key(key),
                        "expected at least one collection",
                    );
                }
                cx.names(&path.key(key), names, "collection");
            }
        }
    }
    if let Some(evaluation) = &s.evaluation {
        cx.interval(&spec.key("evaluation"), evaluation);
    }
}

fn package(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &PackageSpec) {
    if let Some(source) = &s.source {
        cx.repo_path(&spec.key("source"), source.as_str(), Some(Expect::Dir));
    }
    cx.names(
        &spec.key("distributionPoints"),
        &s.distribution_points,
        "distribution point",
    );
    if let Some(update) = &s.update_distribution_points {
        cx.interval(&spec.key("updateDistributionPoints"), update);
        if s.source.is_none() {
            cx.error(
                "invalid-value",
                &spec.key("updateDistributionPoints"),
                "a package without `source` has no content to refresh",
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (i, program) in s.programs.iter().enumerate() {
        let path = spec.key("programs").index(i);
        if !seen.insert(program.name.as_str()) {
            cx.error(
                "duplicate-name",
                &path.key("name"),
                format!(
                    "program `{}` is declared twice in this package",
                    program.name
                ),
            );
        }
        program_fields(cx, &path, program);
        if let Some(scan) = &program.scan {
            let at = path.key("scan").key("catalog");
            if let Err(why) = scan_catalog_path(&scan.catalog) {
                cx.error(
                    "invalid-value",
                    &at,
                    format!("invalid catalog path `{}`: {why}", scan.catalog),
                )
                .help = Some(
                    "give the catalog's path inside the package's source directory, with `/` between directories, e.g. `mssecure.xml`".into(),
                );
            }
            if s.source.is_none() {
                cx.error(
                    "invalid-value",
                    &path.key("scan"),
                    "a scan program needs its catalog in the package's content, but the package has no `source`",
                )
                .help = Some("add `source` (the directory that holds the catalog) to the package".into());
            }
        }
    }
}

/// A scan catalog's path: relative to the package source, `/`-separated,
/// staying inside it (what the agent accepts from a content manifest).
pub(super) fn scan_catalog_path(path: &str) -> Result<(), &'static str> {
    if path.trim().is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') || path.contains(':') {
        return Err("it must be relative to the package's source directory");
    }
    if path.contains('\\') {
        return Err("use `/` between directories");
    }
    if path.chars().any(char::is_control) {
        return Err("it contains control characters");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(
            "empty, `.` and `..` segments are not allowed (it must stay inside the source)",
        );
    }
    Ok(())
}

fn program_fields(cx: &mut Ctx<'_, '_>, path: &FieldPath, p: &Program) {
    if p.name.trim().is_empty() {
        cx.error(
            "invalid-name",
            &path.key("name"),
            "the program name is empty",
        );
    }
    if p.command_line.trim().is_empty() {
        cx.error(
            "invalid-value",
            &path.key("commandLine"),
            "the command line is empty",
        );
    } else {
        command_line(cx, &path.key("commandLine"), &p.command_line);
    }
    if let Some(size) = &p.estimated_disk_space {
        if let Err(e) = units::parse_size(size.as_str()) {
            cx.error(
                "invalid-value",
                &path.key("estimatedDiskSpace"),
                format!("invalid size `{}`: {e}", size.as_str()),
            );
        }
    }
    if let Some(max) = &p.max_run_time {
        cx.duration(&path.key("maxRunTime"), max);
    }
    if p.allow_user_interaction && p.run_with != RunWith::AdministrativeRights {
        cx.error(
            "invalid-value",
            &path.key("allowUserInteraction"),
            "user interaction applies only to programs that run with administrative rights",
        )
        .help =
            Some("set `runWith: administrativeRights`, or remove `allowUserInteraction`".into());
    }
    match (p.drive_mode, &p.drive_letter) {
        (DriveMode::SpecificDriveLetter, None) => {
            cx.error(
                "missing-field",
                &path.key("driveLetter"),
                "`driveMode: specificDriveLetter` needs `driveLetter`",
            );
        }
        (DriveMode::SpecificDriveLetter, Some(letter)) => {
            let valid = letter.len() == 1 && letter.chars().all(|c| c.is_ascii_alphabetic());
            if !valid {
                cx.error(
                    "invalid-value",
                    &path.key("driveLetter"),
                    format!("invalid drive letter `{letter}`: expected one letter, e.g. `Z`"),
                );
            }
        }
        (_, Some(_)) => {
            cx.error(
                "invalid-value",
                &path.key("driveLetter"),
                "`driveLetter` applies only with `driveMode: specificDriveLetter`",
            );
        }
        (_, None) => {}
    }
    if let Some(removal) = &p.removal {
        if removal.uninstall_key.trim().is_empty() {
            cx.error(
                "invalid-value",
                &path.key("removal").key("uninstallKey"),
                "expected the uninstall registry key's name",
            );
        }
    }
}

fn assignments(cx: &mut Ctx<'_, '_>, path: &FieldPath, schedule: &[Assignment]) {
    for (i, a) in schedule.iter().enumerate() {
        let p = path.index(i);
        match (&a.start, &a.event) {
            (Some(_), Some(_)) => {
                cx.error("invalid-value", &p, "an assignment has either `start` (with an optional `every`) or `event`, not both");
            }
            (None, None) => {
                cx.error("missing-field", &p, "an assignment needs `start` (with an optional `every`) or `event`")
                    .help = Some("e.g. `{start: 2026-11-24T02:00:00Z, every: 7d}` or `{event: asSoonAsPossible}`".into());
            }
            (None, Some(_)) if a.every.is_some() => {
                cx.error(
                    "invalid-value",
                    &p.key("every"),
                    "`every` repeats a `start` time; an event assignment has none",
                );
            }
            _ => {}
        }
        if let Some(start) = &a.start {
            cx.time(&p.key("start"), start);
        }
        if let Some(every) = &a.every {
            cx.duration(&p.key("every"), every);
        }
    }
}

fn availability(
    cx: &mut Ctx<'_, '_>,
    spec: &FieldPath,
    available: Option<&TimeText>,
    expires: Option<&TimeText>,
) {
    let from = available.and_then(|t| cx.time(&spec.key("availableAfter"), t));
    let until = expires.and_then(|t| cx.time(&spec.key("expiresAt"), t));
    let before = match (from, until) {
        (Some(ScheduleTime::Instant(a)), Some(ScheduleTime::Instant(b))) => b <= a,
        (Some(ScheduleTime::Local(a)), Some(ScheduleTime::Local(b))) => b <= a,
        _ => false,
    };
    if before {
        cx.error(
            "invalid-value",
            &spec.key("expiresAt"),
            "the advertisement expires before it becomes available",
        );
    }
}

fn advertisement(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &AdvertisementSpec) {
    availability(cx, spec, s.available_after.as_ref(), s.expires_at.as_ref());
    assignments(cx, &spec.key("schedule"), &s.schedule);
}

fn sync_host(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &SyncHostSpec) {
    cx.host(&spec.key("host"), &s.host);
    cx.interval(&spec.key("schedule"), &s.schedule);
    let command = spec.key("command");
    if let Some(server) = &s.command.site_server {
        cx.host(&command.key("siteServer"), server);
    }
    if let Some(code) = &s.command.site_code {
        site_code(cx, &command.key("siteCode"), code);
    }
    if let Some(target) = &s.command.target {
        cx.repo_path(&command.key("target"), target.as_str(), None);
    }
    if let Some(id) = &s.command.package_id {
        let valid = id.len() == 8
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid {
            cx.error("invalid-value", &command.key("packageId"), format!("invalid package ID `{id}`: expected the site code and five hexadecimal digits, e.g. `LAB00012`"));
        }
    }
    let mut types = BTreeSet::new();
    for (i, catalog) in s.catalogs.iter().enumerate() {
        let path = spec.key("catalogs").index(i);
        cx.url(&path.key("url"), &catalog.url, &["http", "https", "file"]);
        if let Some(pin) = &catalog.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                cx.error(
                    "invalid-value",
                    &path.key("sha256"),
                    format!(
                        "the SHA-256 pin has {} characters: expected 64 hexadecimal digits",
                        pin.chars().count()
                    ),
                )
                .help = Some("pin the catalog with the output of `sha256sum FILE`".into());
            }
        }
        if let Some(signature) = &catalog.signature {
            let sig = path.key("signature");
            cx.url(&sig.key("url"), &signature.url, &["http", "https", "file"]);
            cx.secret_ref(&sig.key("keyFrom"), &signature.key_from);
        }
        if !types.insert(catalog.catalog_type) {
            cx.error(
                "duplicate-name",
                &path.key("type"),
                "this catalog type is listed twice; a sync host fetches each catalog once",
            );
        }
    }
    if let Some(proxy) = &s.proxy {
        proxy_fields(cx, &spec.key("proxy"), proxy);
    }
    if let Some(tls) = &s.tls {
        cx.repo_path(
            &spec.key("tls").key("caFile"),
            tls.ca_file.as_str(),
            Some(Expect::File),
        );
    }
}

fn proxy_fields(cx: &mut Ctx<'_, '_>, path: &FieldPath, proxy: &Proxy) {
    cx.url(&path.key("url"), &proxy.url, &["http", "https"]);
    match (&proxy.username, &proxy.password_from) {
        (Some(_), None) => {
            cx.error(
                "missing-field",
                &path.key("passwordFrom"),
                "an authenticated proxy needs `passwordFrom` with `username`",
            )
            .help = Some("`passwordFrom: {env: NAME}` or `passwordFrom: {file: PATH}`".into());
        }
        (None, Some(_)) => {
            cx.error(
                "missing-field",
                &path.key("username"),
                "`passwordFrom` needs `username`",
            );
        }
        (Some(user), Some(secret)) => {
            if user.trim().is_empty() {
                cx.error(
                    "invalid-value",
                    &path.key("username"),
                    "the user name is empty",
                );
            }
            cx.secret_ref(&path.key("passwordFrom"), secret);
        }
        (None, None) => {}
    }
}

/// `verifySignature` needs `trustedSigners`, a readable PEM file of
/// certificates.
fn trusted_signers(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &SoftwareUpdatePackageSpec) {
    if let Some(file) = &s.trusted_signers {
        let path = spec.key("trustedSigners");
        match repo_path(cx.repo, file.as_str()) {
            Ok(full) if full.is_file() => {
                if let Err(e) = crate::supdate::signature::load_trust(cx.repo, file.as_str()) {
                    cx.error("invalid-value", &path, e).help = Some(
                        "give a PEM file of the publisher or CA certificates whose signatures you accept".into(),
                    );
                }
            }
            _ => cx.repo_path(&path, file.as_str(), Some(Expect::File)),
        }
    } else if s.verify_signature {
        cx.error(
            "missing-field",
            &spec.key("verifySignature"),
            "`verifySignature` is true (the default) but no `trustedSigners` names the certificates to trust",
        )
        .help = Some(
            "add `trustedSigners: certs/publishers.pem` (a PEM file, relative to the repository root, of the publisher or CA certificates you trust), or set `verifySignature: false` to rely on the SHA-256 recorded at download alone".into(),
        );
    }
}

fn software_update_package(cx: &mut Ctx<'_, '_>, spec: &FieldPath, s: &SoftwareUpdatePackageSpec) {
    if let Some(notice) = &s.notice {
        cx.repo_path(&spec.key("notice"), notice.as_str(), Some(Expect::File));
        if !notice.as_str().to_ascii_lowercase().ends_with(".rtf") {
            cx.error(
                "invalid-value",
                &spec.key("notice"),
                "the notice is an RTF file (`.rtf`)",
            );
        }
    }
    trusted_signers(cx, spec, s);
    // Downloaded updates land in the source; without download they must be there.
    let expect = (!s.download).then_some(Expect::Dir);
    cx.repo_path(&spec.key("source"), s.source.as_str(), expect);
    if s.updates.is_empty() {
        cx.error(
            "invalid-value",
            &spec.key("updates"),
            "expected at least one update",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, update) in s.updates.iter().enumerate() {
        let path = spec.key("updates").index(i);
        update_selection(cx, &path, update);
        let (field, what, id) = if let Some(b) = &update.bulletin {
            ("bulletin", "bulletin", b.trim().to_ascii_uppercase())
        } else if let Some(p) = &update.patch {
            ("patch", "patch", p.trim().to_ascii_lowercase())
        } else if let Some(m) = &update.missing_in {
            ("missingIn", "missingIn of collection", m.collection.clone())
        } else {
            continue;
        };
        let mut severities: Vec<&str> = update
            .missing_in
            .iter()
            .flat_map(|m| m.severities.iter().map(|s| s.as_str()))
            .collect();
        severities.sort_unstable();
        let key = (
            field,
            id.clone(),
            update.q_numbers.clone(),
            update.products.clone(),
            update.language.clone(),
            severities.join(","),
        );
        if !seen.insert(key) {
            cx.error(
                "duplicate-name",
                &path.key(field),
                format!("{what} `{id}` is selected twice with the same filters"),
            );
        }
    }
    cx.names(
        &spec.key("distributionPoints"),
        &s.distribution_points,
        "distribution point",
    );
    let agent = spec.key("installAgent");
    cx.duration(&agent.key("countdown"), &s.install_agent.countdown);
    cx.duration(&agent.key("maxRunTime"), &s.install_agent.max_run_time);
    if let Some(postpone) = &s.notification.allow_postpone {
        cx.duration(&spec.key("notification").key("allowPostpone"), postpone);
        if !s.notification.prompt_user {
            cx.error(
                "invalid-value",
                &spec.key("notification").key("allowPostpone"),
                "users can postpone only when they are prompted",
            )
            .help = Some("set `notification.promptUser: true`".into());
        }
    }
    if s.office.is_some() && s.update_type != sync_host::CatalogType::Office {
        cx.error(
            "invalid-value",
            &spec.key("office"),
            "`office` settings apply only to `updateType: office`",
        );
    }
    if let Some(ad) = &s.advertisement {
        let path = spec.key("advertisement");
        availability(
            cx,
            &path,
            ad.available_after.as_ref(),
            ad.expires_at.as_ref(),
        );
        assignments(cx, &path.key("schedule"), &ad.schedule);
    }
}

fn update_selection(cx: &mut Ctx<'_, '_>, path: &FieldPath, u: &UpdateSelection) {
    let given: Vec<&str> = [
        ("bulletin", u.bulletin.is_some()),
        ("patch", u.patch.is_some()),
        ("missingIn", u.missing_in.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match given.as_slice() {
        [] => {
            cx.error(
                "invalid-value",
                path,
                "the selection names no update: expected one of `bulletin`, `patch` or `missingIn`",
            )
            .help = Some("e.g. `bulletin: MS04-011`, `patch: Q299687_W2K_SP3_x86_en.EXE` or `missingIn: { collection: Pilot }`".into());
        }
        [_] => {}
        [_, second, ..] => {
            cx.error(
                "invalid-value",
                &path.key(second),
                format!(
                    "`{second}` cannot go with `{}`: a selection names its updates one way (`bulletin`, `patch` or `missingIn`)",
                    given[0]
                ),
            )
            .help = Some("split it into one selection per way".into());
        }
    }
    if let Some(bulletin) = &u.bulletin {
        if !is_bulletin_id(bulletin) {
            cx.error(
                "invalid-value",
                &path.key("bulletin"),
                format!("invalid bulletin `{bulletin}`: expected an ID such as `MS04-011`"),
            );
        }
    }
    if let Some(patch) = &u.patch {
        let p = patch.trim();
        if p.is_empty() || p.contains(['/', '\\', '\n', '\r']) {
            cx.error(
                "invalid-value",
                &path.key("patch"),
                format!("invalid patch name `{p}`: expected a catalog patch or file name such as `Q299687_W2K_SP3_x86_en.EXE`"),
            );
        }
    }
    if let Some(m) = &u.missing_in {
        if m.collection.trim().is_empty() {
            cx.error(
                "invalid-value",
                &path.key("missingIn").key("collection"),
                "expected a collection name",
            );
        }
    }
    if u.bulletin.is_none() && !u.q_numbers.is_empty() {
        cx.error(
            "invalid-value",
            &path.key("qNumbers"),
            "`qNumbers` narrows a `bulletin` selection only",
        )
        .help = Some("select the bulletin with `bulletin:` or leave `qNumbers` out".into());
    }
    for (i, q) in u.q_numbers.iter().enumerate() {
        if q.is_empty() || !q.chars().all(|c| c.is_ascii_digit()) {
            cx.error(
                "invalid-value",
                &path.key("qNumbers").index(i),
                format!("invalid Q number `{q}`: expected digits only, e.g. `835732`"),
            );
        }
    }
    if let Some(line) = &u.command_line {
        if line.contains(['\n', '\r']) {
            cx.error(
                "invalid-value",
                &path.key("commandLine"),
                "the command line spans several lines",
            );
        } else {
            command_line(cx, &path.key("commandLine"), line);
        }
    }
}

/// A command line the agent runs in the package directory: it splits, and
/// its program does not leave that directory (`crate::command_line`).
fn command_line(cx: &mut Ctx<'_, '_>, path: &FieldPath, line: &str) {
    let checked = crate::command_line::parse(line)
        .and_then(|argv| crate::command_line::check_package_program(&argv[0]));
    if let Err(e) = checked {
        cx.error("invalid-value", path, e);
    }
}

/// `MS04-011`: MS, two digits, a hyphen, three digits.
fn is_bulletin_id(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 8
        && b[..2].eq_ignore_ascii_case(b"MS")
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bulletin_ids() {
        assert!(super::is_bulletin_id("MS04-011"));
        assert!(super::is_bulletin_id("ms03-026"));
        assert!(!super::is_bulletin_id("MS04-11"));
        assert!(!super::is_bulletin_id("KB835732"));
    }
}
