//! A software update package's notice: an RTF file in the repository, read
//! when the package is planned and carried into client policy as plain
//! text. Pure apart from [`read`].

use std::path::Path;

/// Largest notice file read.
pub const MAX_NOTICE_BYTES: u64 = 64 * 1024;
/// Largest notice text carried into client policy, in characters.
pub const MAX_NOTICE_CHARS: usize = 4000;

/// The text of the notice file at `path` (relative to the repository
/// `dir`), or why it cannot be used.
pub fn read(dir: &Path, path: &str) -> Result<String, String> {
    let full = crate::load::resolve_repo_path(dir, path).map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&full).map_err(|e| format!("cannot be read: {e}"))?;
    if meta.len() > MAX_NOTICE_BYTES {
        return Err(format!(
            "is {} bytes; a notice may have at most {MAX_NOTICE_BYTES}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(&full).map_err(|e| format!("cannot be read: {e}"))?;
    let text = rtf_to_text(&bytes)?;
    let chars = text.chars().count();
    if chars > MAX_NOTICE_CHARS {
        return Err(format!(
            "holds {chars} characters of text; at most {MAX_NOTICE_CHARS} go into client policy"
        ));
    }
    Ok(text)
}

/// The plain text of an RTF document: paragraphs and line breaks as `\n`,
/// tabs as `\t`, `\'hh` as Windows-1252 (Latin-1 above 0x9F), `\uN` as
/// that character; font, colour and style tables, pictures and every
/// `{\*…}` destination left out. Trailing white space of the whole text is
/// trimmed. `Err` when it is not RTF (no `{\rtf` at the start) or its
/// braces do not balance.
pub fn rtf_to_text(input: &[u8]) -> Result<String, String> {
    let trimmed = input
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(input)
        .trim_ascii_start();
    if !trimmed.starts_with(b"{\\rtf") {
        return Err("is not RTF: it does not begin with `{\\rtf`".into());
    }
    const SKIP: [&str; 8] = [
        "fonttbl",
        "colortbl",
        "stylesheet",
        "info",
        "pict",
        "header",
        "footer",
        "listtable",
    ];
    let mut out = String::new();
    // Per group: whether its text is skipped, and the \ucN count.
    let mut stack: Vec<(bool, usize)> = Vec::new();
    let mut skip = false;
    let mut uc = 1usize;
    // Characters still to drop after a \uN.
    let mut drop_next = 0usize;
    let mut i = 0;
    let b = trimmed;
    let mut group_start = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' => {
                stack.push((skip, uc));
                group_start = true;
                i += 1;
                continue;
            }
            b'}' => {
                let Some((s, u)) = stack.pop() else {
                    return Err("is not valid RTF: a `}` closes no group".into());
                };
                skip = s;
                uc = u;
                i += 1;
                group_start = false;
                if stack.is_empty() {
                    break;
                }
                continue;
            }
            b'\\' => {
                i += 1;
                let Some(&n) = b.get(i) else { break };
                if n.is_ascii_alphabetic() {
                    let start = i;
                    while i < b.len() && b[i].is_ascii_alphabetic() {
                        i += 1;
                    }
                    let word = std::str::from_utf8(&b[start..i]).unwrap_or_default();
                    let num_start = i;
                    if i < b.len() && (b[i] == b'-' || b[i].is_ascii_digit()) {
                        i += 1;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                    let param: Option<i64> = std::str::from_utf8(&b[num_start..i])
                        .ok()
                        .and_then(|t| t.parse().ok());
                    if i < b.len() && b[i] == b' ' {
                        i += 1;
                    }
                    if group_start && SKIP.contains(&word) {
                        skip = true;
                    }
                    group_start = false;
                    if skip {
                        continue;
                    }
                    match word {
                        "par" | "line" | "sect" | "page" => out.push('\n'),
                        "tab" => out.push('\t'),
                        "emdash" => out.push('\u{2014}'),
                        "endash" => out.push('\u{2013}'),
                        "bullet" => out.push('\u{2022}'),
                        "lquote" => out.push('\u{2018}'),
                        "rquote" => out.push('\u{2019}'),
                        "ldblquote" => out.push('\u{201C}'),
                        "rdblquote" => out.push('\u{201D}'),
                        "uc" => uc = param.unwrap_or(1).clamp(0, 8) as usize,
                        "u" => {
                            if let Some(v) = param {
                                let v = if v < 0 { v + 65_536 } else { v };
                                if let Some(ch) = u32::try_from(v).ok().and_then(char::from_u32) {
                                    out.push(ch);
                                }
                                drop_next = uc;
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                i += 1;
                let was_start = group_start;
                group_start = false;
                match n {
                    b'*' if was_start => skip = true,
                    b'\'' => {
                        let hex = b.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                        let value = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                        i += 2;
                        if skip {
                            continue;
                        }
                        if drop_next > 0 {
                            drop_next -= 1;
                            continue;
                        }
                        if let Some(v) = value {
                            out.push(cp1252(v));
                        }
                    }
                    b'\\' | b'{' | b'}' if !skip => {
                        if drop_next > 0 {
                            drop_next -= 1;
                        } else {
                            out.push(n as char);
                        }
                    }
                    b'~' if !skip => out.push('\u{00A0}'),
                    b'\n' | b'\r' if !skip => out.push('\n'),
                    _ => {}
                }
                continue;
            }
            b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        group_start = false;
        i += 1;
        if skip {
            continue;
        }
        if drop_next > 0 {
            drop_next -= 1;
            continue;
        }
        out.push(if c.is_ascii() { c as char } else { cp1252(c) });
    }
    if !stack.is_empty() {
        return Err("is not valid RTF: a group is not closed (unbalanced braces)".into());
    }
    Ok(out.trim_end().to_string())
}

/// One Windows-1252 byte as a character.
fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{FFFD}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{FFFD}',
        '\u{017D}', '\u{FFFD}', '\u{FFFD}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
        '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}',
        '\u{0153}', '\u{FFFD}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[(b - 0x80) as usize],
        _ => b as char,
    }
}

#[cfg(test)]
mod tests {
    use super::rtf_to_text;

    #[test]
    fn plain_text_of_a_wordpad_notice() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fnil\fcharset0 Arial;}}
{\*\generator Msftedit 5.41.15.1507;}\viewkind4\uc1\pard\f0\fs20 Security updates will be installed tonight.\par
Save your work \endash  the machine may restart.\par
Caf\'e9 \{IT\} \u8364? 5\par
}";
        assert_eq!(
            rtf_to_text(rtf).unwrap(),
            "Security updates will be installed tonight.\nSave your work \u{2013} the machine may restart.\nCaf\u{e9} {IT} \u{20AC} 5"
        );
    }

    #[test]
    fn not_rtf_and_unbalanced_are_refused() {
        assert!(rtf_to_text(b"hello").unwrap_err().contains("not RTF"));
        assert!(rtf_to_text(br"{\rtf1 open {\b bold}")
            .unwrap_err()
            .contains("not closed"));
    }
}
