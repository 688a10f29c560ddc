use std::path::Path;

use super::{exit, Failure, Format, Outcome};
use crate::render::{self, Style};
use crate::validate::{validate_dir, Options};

pub fn run(dir: &Path, strict: bool, format: Format, style: Style) -> Outcome {
    let report = validate_dir(dir, Options { strict }).map_err(Failure::Diagnostic)?;
    match format {
        Format::Human => print!("{}", render::human(&report, style)),
        Format::Json => print!("{}", render::json(&report)),
    }
    Ok(if report.is_valid() {
        exit::OK
    } else {
        exit::FAILED
    })
}
