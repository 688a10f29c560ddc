use std::path::PathBuf;

use super::{block_on, exit, input_failure, with_store, Format, Outcome, StateArgs};
use crate::manifest::Kind;
use crate::ops;
use crate::plan::PlanOptions;
use crate::render::{self, Style};
use crate::secret::SecretSource;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory that holds the site's manifests.
    dir: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Save the plan to FILE for `patchops apply FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Plan only this object (KIND/NAME); repeatable.
    #[arg(long, value_name = "KIND/NAME", value_parser = parse_target)]
    target: Vec<(Kind, String)>,
    /// Allow a plan that deletes more than the guard permits.
    #[arg(long)]
    allow_destroy: bool,
    /// Re-hash package content on the distribution points instead of
    /// trusting file names and sizes (slower; finds flipped bytes).
    #[arg(long)]
    validate: bool,
    /// Sign the saved plan with the key in `env:NAME` or `file:PATH`.
    #[arg(long, value_name = "REF")]
    sign_key_from: Option<SecretSource>,
}

pub fn parse_target(text: &str) -> Result<(Kind, String), String> {
    let (kind, name) = text
        .split_once('/')
        .ok_or("expected KIND/NAME, e.g. \"Collection/MS Security Updates\"")?;
    let kind = kind
        .parse::<Kind>()
        .map_err(|()| format!("unknown kind `{kind}`"))?;
    if name.is_empty() {
        return Err("the name after `/` is empty".into());
    }
    Ok((kind, name.to_string()))
}

pub fn run(args: Args, style: Style) -> Outcome {
    let key = args
        .sign_key_from
        .as_ref()
        .map(SecretSource::read)
        .transpose()
        .map_err(input_failure)?;
    let request = ops::plan::Request {
        dir: &args.dir,
        options: PlanOptions {
            targets: args.target.clone(),
            allow_destroy: args.allow_destroy,
        },
        sign_key: key.as_ref(),
        validate_content: args.validate,
    };
    let plan = block_on(with_store(&args.state, async |store| {
        ops::plan::make(store, &request).await
    }))?;
    if let Some(out) = &args.out {
        std::fs::write(out, plan.to_json()).map_err(|e| {
            input_failure(format!("cannot write the plan to {}: {e}", out.display()))
        })?;
    }
    match args.format {
        Format::Human => {
            print!("{}", render::plan::human(&plan, style));
            if let Some(out) = &args.out {
                println!(
                    "\nSaved the plan to {}. Apply exactly it with: patchops apply {}",
                    out.display(),
                    out.display()
                );
            }
        }
        Format::Json => print!("{}", plan.to_json()),
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
