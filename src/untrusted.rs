//! Untrusted text made safe for a terminal.
//!
//! Names, messages and file names come from manifests, agents and the
//! store; printed raw, an ESC sequence rewrites the operator's screen, a CR
//! or LF forges a line in a plan a reviewer reads, and a bidi override
//! reorders what is shown. Every human printer passes such text through
//! [`line`] (one line expected) or [`text`] (line breaks kept), which
//! escape those characters visibly (`\x1b`, `\r`, `\u{202e}`). JSON output
//! is not passed through here: serde escapes what JSON needs.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// `s` for a place where one line is expected: every control character,
/// line breaks included, escaped.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` where line breaks are part of the text (a multi-line message or a
/// source snippet): `\n`, `\t` and the `\r` of a CRLF are kept, every other
/// control character escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// A [`Display`](fmt::Display) of `s` escaped as by [`line`], for `format!`
/// arguments.
pub fn shown(s: &str) -> Shown<'_> {
    Shown(s)
}

/// See [`shown`].
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&line(self.0))
    }
}

/// Whether `c` must not reach a terminal raw.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{061c}'            // Arabic letter mark
            | '\u{200e}' | '\u{200f}' // LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
        )
}

fn escape(s: &str, multiline: bool) -> Cow<'_, str> {
    let keep = |c: char, next: Option<char>| {
        multiline && (c == '\n' || c == '\t' || (c == '\r' && next == Some('\n')))
    };
    let mut chars = s.chars().peekable();
    let mut needs = false;
    while let Some(c) = chars.next() {
        if is_unsafe(c) && !keep(c, chars.peek().copied()) {
            needs = true;
            break;
        }
    }
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if !is_unsafe(c) || keep(c, chars.peek().copied()) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(line("Firefox 128.0 – ünïcode"), Cow::Borrowed(_)));
        assert!(matches!(text("two\nlines\r\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn c0_controls_and_del_are_escaped_visibly() {
        assert_eq!(line("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(line("bell\x07"), "bell\\x07");
        assert_eq!(line("nul\0"), "nul\\0");
        assert_eq!(line("del\x7f"), "del\\x7f");
        assert_eq!(line("over\rwrite"), "over\\rwrite");
        assert_eq!(line("tab\there"), "tab\\there");
    }

    #[test]
    fn one_line_text_cannot_break_the_line() {
        assert_eq!(
            line("pkg.yaml\n+ create Package \"evil\""),
            "pkg.yaml\\n+ create Package \"evil\""
        );
        assert_eq!(line("a\r\nb"), "a\\r\\nb");
        assert_eq!(line("a\u{2028}b"), "a\\u{2028}b");
    }

    #[test]
    fn multiline_text_keeps_line_breaks_but_not_escapes() {
        assert_eq!(text("one\ntwo\r\nthree\tx"), "one\ntwo\r\nthree\tx");
        assert_eq!(text("lone\rcr"), "lone\\rcr");
        assert_eq!(text("x\x1b]0;title\x07"), "x\\x1b]0;title\\x07");
    }

    #[test]
    fn c1_controls_are_escaped() {
        assert_eq!(line("csi\u{9b}2J"), "csi\\u{9b}2J");
        assert_eq!(line("nel\u{85}"), "nel\\u{85}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(line("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2069}',
        ] {
            assert!(line(&c.to_string()).starts_with("\\u{20"), "{c:?}");
        }
    }

    #[test]
    fn shown_pads_the_escaped_text() {
        assert_eq!(format!("[{:8}]", shown("a\x1b")), "[a\\x1b   ]");
    }
}
