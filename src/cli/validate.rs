use std::path::Path;

use super::{exit, Format};
use crate::render::{self, Style};
use crate::validate::{validate_dir, Options};

pub fn run(dir: &Path, strict: bool, format: Format, style: Style) -> u8 {
    let report = match validate_dir(dir, Options { strict }) {
        Ok(report) => report,
        Err(d) => {
            eprint!("{}", render::one(&d, style));
            return exit::FAILED;
        }
    };
    match format {
        Format::Human => print!("{}", render::human(&report, style)),
        Format::Json => print!("{}", render::json(&report)),
    }
    if report.is_valid() {
        exit::OK
    } else {
        exit::FAILED
    }
}
