//! `patchops updates download DIR [--package NAME] [--mirror URL]` and
//! `patchops updates verify FILE --trusted PEM`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{block_on, exit, line_failure, with_store, Format, Outcome, StateArgs};
use crate::supdate::download::{self, DownloadOptions, Event, MIRROR_ENV};
use crate::validate::{validate_dir, Options};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fetch the update files of the software update packages in DIR from
    /// their catalog locations into their sources, verify them and record
    /// them in `.patchops/updates.json`; then show each package's readiness.
    Download {
        /// The directory that holds the site's manifests.
        dir: PathBuf,
        /// Only this software update package.
        #[arg(long)]
        package: Option<String>,
        /// A mirror that serves the catalog's paths: replaces the scheme,
        /// host and port of every download URL (no proxy is used for it).
        #[arg(long, env = MIRROR_ENV)]
        mirror: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The store whose inventory and scan results resolve `missingIn`
        /// selections (opened only when a package has one).
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check the Authenticode signature of one update file (a PE file)
    /// against a PEM file of trusted certificates, as `verifySignature`
    /// does; exit code 0 when it is accepted, 1 otherwise.
    Verify {
        /// The update file.
        file: PathBuf,
        /// A PEM file of the publisher or CA certificates to trust.
        #[arg(long, value_name = "PEM")]
        trusted: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::Download {
            dir,
            package,
            mirror,
            format,
            state,
        } => download(dir, package, mirror, format, state),
        Command::Verify {
            file,
            trusted,
            format,
        } => verify(&file, &trusted, format),
    }
}

fn verify(file: &std::path::Path, trusted: &std::path::Path, format: Format) -> Outcome {
    use crate::supdate::readiness::read_file;
    let trust = std::fs::read(trusted)
        .map_err(|e| format!("{}: {e}", trusted.display()))
        .and_then(|b| {
            crate::authenticode::TrustStore::from_pem(&b)
                .map_err(|e| format!("{}: {e}", trusted.display()))
        });
    let trust = trust.map_err(|e| line_failure(format!("--trusted {e}")))?;
    let (_, _, bytes) =
        read_file(file).map_err(|e| line_failure(format!("{}: {e}", file.display())))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let outcome = crate::supdate::signature::check(&name, &bytes, &trust);
    match format {
        Format::Json => {
            let doc = match &outcome {
                Ok(v) => {
                    serde_json::json!({"file": file.display().to_string(), "valid": true, "signature": v})
                }
                Err(why) => {
                    serde_json::json!({"file": file.display().to_string(), "valid": false, "why": why})
                }
            };
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Human => match &outcome {
            Ok(v) => {
                println!(
                    "{}: valid: signed by {}, trusted through {} ({} image digest {})",
                    file.display(),
                    v.signer,
                    v.trusted,
                    v.digest.name(),
                    v.image_digest
                );
                println!("    chain: {}", v.chain.join(" → "));
                if let Some(t) = &v.signing_time {
                    println!("    signing time: {t}");
                }
                for n in &v.notes {
                    println!("    note: {n}");
                }
            }
            Err(why) => println!("{}: not accepted: {why}", file.display()),
        },
    }
    Ok(if outcome.is_ok() {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn download(
    dir: PathBuf,
    package: Option<String>,
    mirror: Option<String>,
    format: Format,
    state: StateArgs,
) -> Outcome {
    let report = validate_dir(&dir, Options::default()).map_err(|d| line_failure(d.message))?;
    if !report.is_valid() {
        return Err(line_failure(format!(
            "the manifests in {} are not valid ({} errors): run `patchops validate` first",
            dir.display(),
            report.errors()
        )));
    }
    let terminal = std::io::stderr().is_terminal();
    let progress = |e: Event<'_>| match e {
        Event::Fetching(package, file, i, n) => {
            if terminal {
                eprint!("[{i}/{n}] {package}: {file} … ");
            } else {
                eprintln!("[{i}/{n}] {package}: downloading {file}");
            }
        }
        Event::Fetched(bytes) if terminal => {
            eprintln!("{}", crate::render::plan::bytes(bytes));
        }
        Event::Fetched(_) => {}
        Event::Kept(package, file) => eprintln!("{package}: {file} is present and verified"),
        Event::Failed(package, file, why) => eprintln!("{package}: {file}: failed: {why}"),
    };
    let options = DownloadOptions {
        package,
        mirror: mirror.filter(|m| !m.trim().is_empty()),
        fetch: Default::default(),
    };
    let desired = &report.desired;
    let outcome = block_on(async {
        let missing = if crate::supdate::missing_in_collections(desired).is_empty() {
            Default::default()
        } else {
            with_store(&state, async |store| {
                crate::ops::plan::missing_states(store, desired).await
            })
            .await
            .map_err(|e| format!("resolving `missingIn` selections: {e}"))?
        };
        download::download(&dir, desired, &options, &missing, &progress).await
    });
    let readiness = outcome.map_err(line_failure)?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&readiness).unwrap_or_default()
        ),
        Format::Human => {
            for r in &readiness {
                if r.ready {
                    println!(
                        "{}: ready ({} files present and verified)",
                        r.package, r.files
                    );
                } else {
                    println!(
                        "{}: not ready: {}",
                        r.package,
                        r.why.as_deref().unwrap_or("unknown")
                    );
                    for m in &r.missing {
                        println!("    missing: {m}");
                    }
                    for u in &r.unverified {
                        println!("    unverified: {}: {}", u.file, u.why);
                    }
                }
                for n in &r.notes {
                    println!("    note: {n}");
                }
            }
        }
    }
    Ok(if readiness.iter().all(|r| r.ready) {
        exit::OK
    } else {
        exit::FAILED
    })
}
