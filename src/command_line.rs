//! Command lines as programs and the agent read them: no shell.
//!
//! Arguments are separated by spaces or tabs; a double-quoted part keeps
//! its spaces (`"C:\Program Files\x.exe" /q` is two arguments); inside
//! quotes `""` is one literal quote; there are no other escapes and no
//! variables, globs, pipes or redirections. An unterminated quote, an empty
//! command line or a line break is an error.
//!
//! A package's program is named relative to its package directory when the
//! name has a `/`: an absolute path, or one that climbs out with `..`,
//! would run something the package does not hold, so both are refused
//! (by validation, and again by the agent). A name without `/` is looked
//! up in the package directory, then on `PATH`. Pure.

/// Splits a command line into a program and its arguments.
pub fn parse(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => {
                quoted = !quoted;
                in_arg = true;
            }
            ' ' | '\t' if !quoted => {
                if in_arg {
                    args.push(std::mem::take(&mut current));
                    in_arg = false;
                }
            }
            '\n' | '\r' | '\0' => {
                return Err("a command line cannot contain line breaks or NUL".into())
            }
            c => {
                current.push(c);
                in_arg = true;
            }
        }
    }
    if quoted {
        return Err(format!("unterminated quote in the command line {line:?}"));
    }
    if in_arg {
        args.push(current);
    }
    if args.first().is_none_or(String::is_empty) {
        return Err("the command line is empty".into());
    }
    Ok(args)
}

/// Why a package's program name (the command line's first word) may not
/// run, if it may not: an absolute path, or a `..` component.
pub fn check_package_program(program: &str) -> Result<(), String> {
    if program.starts_with('/') {
        return Err(format!(
            "the program `{program}` is an absolute path; a program name with `/` is \
             relative to the package directory (name a program on PATH without `/`, \
             e.g. `sh`, or a file of the package)"
        ));
    }
    if program.split('/').any(|part| part == "..") {
        return Err(format!(
            "the program `{program}` climbs out of the package directory with `..`; \
             a program name with `/` is relative to the package directory"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        parse(s).unwrap()
    }

    #[test]
    fn command_lines_split_on_spaces_and_keep_quoted_parts() {
        assert_eq!(
            argv("scanwrapper.exe /cache"),
            ["scanwrapper.exe", "/cache"]
        );
        assert_eq!(argv("  sh   run.sh\t3010 "), ["sh", "run.sh", "3010"]);
        assert_eq!(
            argv(r#""C:\Program Files\x.exe" /q "a b"c"#),
            [r"C:\Program Files\x.exe", "/q", "a bc"]
        );
        assert_eq!(argv(r#"echo "say ""hi""" """#), ["echo", r#"say "hi""#, ""]);
        assert_eq!(argv("echo $HOME;rm"), ["echo", "$HOME;rm"], "no shell");
        assert!(parse("").is_err());
        assert!(parse("   ").is_err());
        assert!(parse("\"\" x").is_err());
        assert!(parse("\"open").unwrap_err().contains("unterminated"));
        assert!(parse("a\nb").is_err());
    }

    #[test]
    fn package_programs_stay_in_the_package_directory() {
        for ok in [
            "scan.exe",
            "bin/scan.exe",
            "./run.sh",
            "sh",
            "a..b/x",
            r"C:\x.exe",
        ] {
            assert!(check_package_program(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("/bin/sh", "absolute path"),
            ("/", "absolute path"),
            ("../other/x.exe", "`..`"),
            ("bin/../../x", "`..`"),
            ("..", "`..`"),
        ] {
            let e = check_package_program(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
