//! `patchops updates download`: fetches each update file a software update
//! package needs from its catalog location (through the sync host's proxy,
//! or from a mirror), writes it atomically into the package's source and
//! records its size and SHA-256 in the lock. Files already there and
//! matching the lock are kept; anything else is fetched again.

use std::path::Path;

use crate::model::Desired;
use crate::suggest::did_you_mean;
use crate::sync::fetch::{Conditional, FetchOptions, Fetched, Fetcher};

use super::readiness::{hash_file, read_file, Lock, LockedFile, UpdateReadiness};
use super::{resolve, Catalogs, OHOTFIX_INI};

/// The environment variable that names a mirror (`http://host:port`).
pub const MIRROR_ENV: &str = "PATCHOPS_UPDATE_MIRROR";

#[derive(Debug, Clone, Default)]
pub struct DownloadOptions {
    /// Only this software update package.
    pub package: Option<String>,
    /// Replaces the scheme, host and port of every catalog download URL
    /// (path and query are kept); the proxy is not used for a mirror.
    pub mirror: Option<String>,
    pub fetch: FetchOptions,
}

/// What the download tells its caller as it goes.
pub enum Event<'a> {
    /// A file is fetched: package, file, index (1-based), count.
    Fetching(&'a str, &'a str, usize, usize),
    /// It arrived: bytes.
    Fetched(u64),
    /// A file was already there and verified.
    Kept(&'a str, &'a str),
    /// A file could not be fetched (the package stays not ready).
    Failed(&'a str, &'a str, String),
}

/// The catalog URL with the mirror's scheme and authority.
pub fn mirrored(url: &str, mirror: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("download URL `{url}`: {e}"))?;
    let base = mirror.trim_end_matches('/');
    let mut out = format!("{base}{}", parsed.path());
    if let Some(q) = parsed.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// Downloads what the packages lack; returns their readiness afterwards.
/// `Err` for problems that stop everything (an unknown package, no catalog,
/// an unusable proxy); a file that fails leaves its package not ready.
pub async fn download(
    dir: &Path,
    desired: &Desired,
    options: &DownloadOptions,
    missing: &super::resolve::MissingStates,
    progress: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Vec<UpdateReadiness>, String> {
    if let Some(name) = &options.package {
        if !desired.software_update_packages.contains_key(name) {
            let names = desired.software_update_packages.keys().map(String::as_str);
            return Err(match did_you_mean(name, names) {
                Some(s) => {
                    format!("no software update package named `{name}`; did you mean `{s}`?")
                }
                None => format!("no software update package named `{name}`"),
            });
        }
    }
    let mut catalogs = Catalogs::default();
    let mut lock = Lock::load(dir);
    for (name, sup) in &desired.software_update_packages {
        if options.package.as_ref().is_some_and(|p| p != name) {
            continue;
        }
        let (files, _) = super::package_files(&sup.spec, &mut catalogs, dir, desired, missing)
            .map_err(|e| format!("package `{name}`: {e}"))?;
        let source = crate::load::resolve_repo_path(dir, sup.spec.source.as_str())
            .map_err(|e| format!("package `{name}`: source: {e}"))?;
        std::fs::create_dir_all(&source)
            .map_err(|e| format!("package `{name}`: creating {}: {e}", source.display()))?;
        let fetcher = if sup.spec.download {
            // The sync host's trusted CAs (for https:// downloads and an
            // https:// mirror) and, without a mirror, its proxy.
            let location = resolve::catalog_location(desired, sup.spec.update_type)?;
            let host = desired.sync_hosts.get(&location.sync_host);
            let proxy = match host {
                Some(host) if options.mirror.is_none() => {
                    crate::sync::proxy_config(&host.spec).map_err(|e| e.to_string())?
                }
                _ => None,
            };
            let ca_file = match host {
                Some(host) => crate::sync::ca_file(dir, &host.spec).map_err(|e| e.to_string())?,
                None => None,
            };
            let fetch = FetchOptions {
                ca_file,
                ..options.fetch.clone()
            };
            Some(Fetcher::new(proxy, fetch).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let trust = super::signature::package_trust(dir, &sup.spec)
            .map_err(|e| format!("package `{name}`: {e}"))?;
        // With `verifySignature`, a file is recorded only when its
        // signature is accepted.
        let signature_ok = |file: &str, bytes: &[u8]| -> Result<(), String> {
            match &trust {
                None => Ok(()),
                Some(t) => super::signature::check(file, bytes, t).map(|_| ()),
            }
        };
        let entries = lock.packages.entry(name.clone()).or_default();
        // Files no longer selected leave the lock.
        entries.retain(|f, _| files.iter().any(|r| &r.file_name == f));
        for (i, file) in files.iter().enumerate() {
            let path = source.join(&file.file_name);
            let current = if trust.is_some() {
                read_file(&path)
                    .ok()
                    .map(|(size, sha, b)| (size, sha, Some(b)))
            } else {
                hash_file(&path).ok().map(|(size, sha)| (size, sha, None))
            };
            let locked = entries.get(&file.file_name);
            if let (Some((size, sha, bytes)), Some(l)) = (&current, locked) {
                if *size == l.size && *sha == l.sha256 {
                    match signature_ok(&file.file_name, bytes.as_deref().unwrap_or_default()) {
                        Ok(()) => progress(Event::Kept(name, &file.file_name)),
                        // The same bytes would come again: say why and go on.
                        Err(why) => progress(Event::Failed(name, &file.file_name, why)),
                    }
                    continue;
                }
            }
            let Some(fetcher) = &fetcher else {
                // `download: false`: files are put there by hand; what is
                // there is recorded as it is.
                match current {
                    Some((size, sha256, bytes)) => {
                        match signature_ok(&file.file_name, bytes.as_deref().unwrap_or_default()) {
                            Ok(()) => {
                                entries.insert(
                                    file.file_name.clone(),
                                    LockedFile {
                                        size,
                                        sha256,
                                        url: String::new(),
                                    },
                                );
                            }
                            Err(why) => {
                                entries.remove(&file.file_name);
                                progress(Event::Failed(
                                    name,
                                    &file.file_name,
                                    format!("{why}; not recorded"),
                                ));
                            }
                        }
                    }
                    None => progress(Event::Failed(
                        name,
                        &file.file_name,
                        "not in the source and `download: false`: copy it there".into(),
                    )),
                }
                continue;
            };
            let Some(url) = &file.download_url else {
                progress(Event::Failed(
                    name,
                    &file.file_name,
                    "the catalog gives no download URL".into(),
                ));
                continue;
            };
            let url = match &options.mirror {
                Some(m) => match mirrored(url, m) {
                    Ok(u) => u,
                    Err(e) => {
                        progress(Event::Failed(name, &file.file_name, e));
                        continue;
                    }
                },
                None => url.clone(),
            };
            progress(Event::Fetching(name, &file.file_name, i + 1, files.len()));
            match fetcher.fetch(&url, &Conditional::default()).await {
                Ok(Fetched::New { bytes, sha256, .. }) => {
                    if let Err(why) = signature_ok(&file.file_name, &bytes) {
                        progress(Event::Failed(
                            name,
                            &file.file_name,
                            format!("{why}; not written nor recorded"),
                        ));
                        continue;
                    }
                    if let Err(e) = crate::sync::write_atomically(&path, &bytes) {
                        progress(Event::Failed(name, &file.file_name, e.to_string()));
                        continue;
                    }
                    progress(Event::Fetched(bytes.len() as u64));
                    entries.insert(
                        file.file_name.clone(),
                        LockedFile {
                            size: bytes.len() as u64,
                            sha256,
                            url: fetcher.scrub(url.clone()),
                        },
                    );
                }
                Ok(Fetched::NotModified) => progress(Event::Failed(
                    name,
                    &file.file_name,
                    "the server answered 304 to an unconditional request".into(),
                )),
                Err(e) => progress(Event::Failed(
                    name,
                    &file.file_name,
                    fetcher.scrub(e.to_string()),
                )),
            }
        }
        if resolve::needs_ohotfix(&sup.spec) {
            let ini = resolve::ohotfix_ini(&super::office_ohotfix(&sup.spec));
            crate::sync::write_atomically(&source.join(OHOTFIX_INI), ini.as_bytes())
                .map_err(|e| format!("package `{name}`: {e}"))?;
        }
        lock.save(dir)?;
    }
    let mut all = super::readiness_all(dir, desired, missing, &mut catalogs);
    if let Some(p) = &options.package {
        all.retain(|r| &r.package == p);
    }
    Ok(all)
}
