//! Running a program: its command line split into a program and arguments
//! (no shell), started in the package directory in its own process group,
//! killed (the whole group) when it exceeds its maximum run time.
//!
//! Command lines are split by [`crate::command_line`]. The program is
//! looked up in the package directory first (as Windows does), then on
//! `PATH`; a program with a `/` is relative to the package directory, and
//! one that is absolute or climbs out with `..` does not start.
//!
//! Exit codes: 0 succeeded; 3010 succeeded, a restart is required (the
//! restart hook runs; the agent never restarts the machine); anything else,
//! or death by a signal, failed. A Unix exit status has 8 bits, so 3010
//! cannot be one: the agent names a file in `PATCHOPS_EXIT_CODE_FILE`, and a
//! program that exits normally after writing a decimal number there has
//! that number as its exit code (a wrapper writes the Windows-style code).

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::manifest::common::CanRun;

/// The exit code that means "succeeded, restart required".
pub const EXIT_RESTART_REQUIRED: i32 = 3010;

/// Whether the program may run now. Linux test machines have no
/// interactive logon this agent watches: whether a user is logged on is
/// what `--user-logged-on` says (default: no one).
pub fn can_run(can_run: CanRun, user_logged_on: bool) -> Result<(), String> {
    match (can_run, user_logged_on) {
        (CanRun::OnlyWhenUserLoggedOn, false) => {
            Err("waiting: the program runs only when a user is logged on".into())
        }
        (CanRun::OnlyWhenNoUserLoggedOn, true) => {
            Err("waiting: the program runs only when no user is logged on".into())
        }
        _ => Ok(()),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    /// It could not be started.
    NotStarted(String),
}

/// The program to execute for `program` (the first word of the command
/// line) in `dir`. The manifests' validation refuses a path that leaves
/// the package directory; the agent refuses it again, for a policy from
/// elsewhere.
fn resolve(program: &str, dir: &Path) -> Result<PathBuf, String> {
    crate::command_line::check_package_program(program)?;
    if program.contains('/') {
        return Ok(dir.join(program));
    }
    let local = dir.join(program);
    if local.is_file() {
        return Ok(local);
    }
    Ok(PathBuf::from(program))
}

/// Runs `argv` in `dir` with at most `max` run time; output goes to `log`.
/// Blocking: call it from a blocking thread.
pub fn run_blocking(
    argv: &[String],
    dir: &Path,
    max: Duration,
    log: &Path,
    env: &[(&str, &str)],
) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::NotStarted("the command line is empty".into());
    };
    let out = match fs::File::create(log) {
        Ok(f) => f,
        Err(e) => return Outcome::NotStarted(format!("cannot create {}: {e}", log.display())),
    };
    let err = match out.try_clone() {
        Ok(f) => f,
        Err(e) => return Outcome::NotStarted(e.to_string()),
    };
    let resolved = match resolve(program, dir) {
        Ok(p) => p,
        Err(e) => return Outcome::NotStarted(e),
    };
    let mut command = Command::new(resolved);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(format!("cannot start {program}: {e}")),
    };
    let started = Instant::now();
    let pid = child.id() as i32;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // Whatever it left behind in its group goes too.
                // SAFETY: signals a process group we created.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                return match (status.code(), status.signal()) {
                    (Some(code), _) => Outcome::Exited(code),
                    (None, Some(sig)) => Outcome::Signalled(sig),
                    (None, None) => Outcome::Signalled(0),
                };
            }
            Ok(None) => {}
            Err(e) => return Outcome::NotStarted(format!("cannot wait for {program}: {e}")),
        }
        if started.elapsed() >= max {
            // SAFETY: signals the process group we created for the child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Outcome::TimedOut(max);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The environment variable naming the exit code file.
pub const EXIT_CODE_FILE_VAR: &str = "PATCHOPS_EXIT_CODE_FILE";

/// The exit code of a normal exit: the number in the exit code file when
/// the program wrote one, else its exit status.
pub fn exit_code(status: i32, exit_code_file: &Path) -> i32 {
    fs::read_to_string(exit_code_file)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(status)
}

/// The last `max` bytes of a program's output, for status messages.
pub fn output_tail(log: &Path, max: usize) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn argv(s: &str) -> Vec<String> {
        crate::command_line::parse(s).unwrap()
    }

    #[test]
    fn can_run_follows_the_logon_setting() {
        assert!(can_run(CanRun::WhetherOrNotUserLoggedOn, false).is_ok());
        assert!(can_run(CanRun::OnlyWhenNoUserLoggedOn, false).is_ok());
        assert!(can_run(CanRun::OnlyWhenUserLoggedOn, false).is_err());
        assert!(can_run(CanRun::OnlyWhenUserLoggedOn, true).is_ok());
        assert!(can_run(CanRun::OnlyWhenNoUserLoggedOn, true).is_err());
    }

    #[test]
    fn exit_codes_timeouts_and_missing_programs() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        fs::write(dir.path().join("run.sh"), "echo hello; exit \"$1\"\n").unwrap();
        let run = |line: &str, max: u64| {
            run_blocking(&argv(line), dir.path(), Duration::from_secs(max), &log, &[])
        };
        assert_eq!(run("sh run.sh 0", 10), Outcome::Exited(0));
        assert_eq!(output_tail(&log, 100), "hello");
        assert_eq!(run("sh run.sh 3010", 10), Outcome::Exited(3010 % 256));
        assert_eq!(run("sh run.sh 7", 10), Outcome::Exited(7));
        let file = dir.path().join("exit-code");
        assert_eq!(exit_code(194, &file), 194);
        fs::write(&file, "3010\n").unwrap();
        assert_eq!(exit_code(194, &file), EXIT_RESTART_REQUIRED);
        // The group is killed: the background sleep does not keep it alive.
        let started = Instant::now();
        assert_eq!(
            run("sh -c \"sleep 30 & sleep 30\"", 1),
            Outcome::TimedOut(Duration::from_secs(1))
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            run("no-such-program-here", 10),
            Outcome::NotStarted(_)
        ));
    }

    #[test]
    fn a_program_outside_the_package_directory_does_not_start() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("package");
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/run.sh"), "#!/bin/sh\nexit 0\n").unwrap();
        fs::write(root.path().join("outside.sh"), "#!/bin/sh\nexit 0\n").unwrap();
        for f in ["package/bin/run.sh", "outside.sh"] {
            fs::set_permissions(root.path().join(f), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let log = root.path().join("out.log");
        let run = |line: &str| run_blocking(&argv(line), &dir, Duration::from_secs(10), &log, &[]);
        assert_eq!(run("bin/run.sh"), Outcome::Exited(0));
        let outside = root.path().join("outside.sh").display().to_string();
        for (line, says) in [
            (outside.as_str(), "absolute path"),
            ("../outside.sh", "`..`"),
        ] {
            match run(line) {
                Outcome::NotStarted(e) => assert!(e.contains(says), "{line}: {e}"),
                other => panic!("{line} ran: {other:?}"),
            }
        }
    }
}
