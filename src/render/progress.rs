//! Progress of content distribution: a bar on a terminal (indicatif), plain
//! lines in CI logs.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::ops::distribute::Progress;

pub struct Reporter {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn report(&self, progress: Progress<'_>) {
        let Ok(mut bar) = self.bar.lock() else { return };
        match progress {
            Progress::Step(step) => {
                if let Some(done) = bar.take() {
                    done.finish();
                }
                let what = format!("{} → {} ({})", step.package, step.dp, step.reason);
                if self.terminal {
                    let b = ProgressBar::new(step.bytes_to_copy);
                    if let Ok(style) = ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    ) {
                        b.set_style(style.progress_chars("=> "));
                    }
                    b.set_message(what);
                    *bar = Some(b);
                } else {
                    eprintln!(
                        "distributing {what}: {} files, {}",
                        step.files_to_copy,
                        super::plan::bytes(step.bytes_to_copy)
                    );
                }
            }
            Progress::Bytes(n) => {
                if let Some(b) = bar.as_ref() {
                    b.inc(n);
                }
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Ok(Some(b)) = self.bar.get_mut().map(Option::take) {
            b.finish();
        }
    }
}
