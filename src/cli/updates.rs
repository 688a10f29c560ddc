//! `patchops updates download DIR [--package NAME] [--mirror URL]`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{block_on, exit, with_store, Format, StateArgs};
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
}

pub fn run(command: Command) -> u8 {
    let Command::Download {
        dir,
        package,
        mirror,
        format,
        state,
    } = command;
    let report = match validate_dir(&dir, Options::default()) {
        Ok(r) => r,
        Err(d) => {
            eprintln!("error: {}", d.message);
            return exit::FAILED;
        }
    };
    if !report.is_valid() {
        eprintln!(
            "error: the manifests in {} are not valid ({} errors): run `patchops validate` first",
            dir.display(),
            report.errors()
        );
        return exit::FAILED;
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
    let readiness = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
    };
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
            }
        }
    }
    if readiness.iter().all(|r| r.ready) {
        exit::OK
    } else {
        exit::FAILED
    }
}
