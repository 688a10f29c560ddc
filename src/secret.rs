//! Secrets by reference: `env:NAME` or `file:PATH`. The value is read by
//! the process that needs it, when it needs it, and never printed.

use std::fmt;

/// A reference to a secret, as given on the command line.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(String),
}

/// A secret value. Its `Debug` does not show it.
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret held by the caller (tests, or a value read elsewhere).
    pub fn new(value: Vec<u8>) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "env:{name}"),
            SecretSource::File(path) => write!(f, "file:{path}"),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for SecretSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Ok(SecretSource::Env(name.to_string())),
            Some(("file", path)) if !path.is_empty() => Ok(SecretSource::File(path.to_string())),
            _ => Err("expected `env:NAME` or `file:PATH`".to_string()),
        }
    }
}

impl SecretSource {
    /// Reads the secret; the error names the reference, never a value.
    pub fn read(&self) -> Result<Secret, String> {
        let value = match self {
            SecretSource::Env(name) => std::env::var_os(name)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| format!("environment variable {name} is not set"))?,
            SecretSource::File(path) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read secret file {path}: {}", e.kind()))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
        };
        if value.is_empty() {
            return Err(format!("the secret from {self} is empty"));
        }
        Ok(Secret(value))
    }
}

/// Compares secrets (or a pinned hash) in time independent of where they
/// differ, so a caller cannot find a secret one byte at a time.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a URL may carry credentials: anything but SQLite (whose paths
/// are shown as given, even when they hold `:` or `@`).
fn may_hold_credentials(url: &str) -> bool {
    !url.trim_start().to_ascii_lowercase().starts_with("sqlite:")
}

/// Splits `scheme://userinfo@host/path?query` into (`scheme://`, userinfo,
/// host-and-rest). Userinfo runs to the last `@` so that an unencoded `@`,
/// `/` or `?` in a password is still taken as part of it (when in doubt,
/// more is hidden, never less).
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let at = rest.rfind('@')?;
    Some((&url[..start], &rest[..at], &rest[at + 1..]))
}

/// A URL (a database, a git remote) with any password (in the userinfo or
/// a `password=` parameter) replaced by `***`. SQLite URLs are shown as
/// given.
pub fn display_url(url: &str) -> String {
    if !may_hold_credentials(url) {
        return url.to_string();
    }
    let masked = match split_userinfo(url) {
        Some((scheme, userinfo, rest)) => match userinfo.find(':') {
            Some(c) => format!("{scheme}{}:***@{rest}", &userinfo[..c]),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    mask_password_param(&masked)
}

fn mask_password_param(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let (head, query) = url.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{head}{}", params.join("&"))
}

/// The password(s) in a URL, raw and percent-decoded, longest first: what
/// [`scrub`] must hide from a message about that URL.
pub fn url_passwords(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !may_hold_credentials(url) {
        return out;
    }
    if let Some((_, userinfo, _)) = split_userinfo(url) {
        if let Some((_, pw)) = userinfo.split_once(':') {
            out.push(pw.to_string());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for p in query.split('&') {
            if let Some((k, v)) = p.split_once('=') {
                if k.eq_ignore_ascii_case("password") {
                    out.push(v.to_string());
                }
            }
        }
    }
    let decoded: Vec<String> = out
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    out.extend(decoded);
    out.retain(|s| !s.is_empty() && s != "***");
    out.sort();
    out.dedup();
    // Longest first, so a password that contains another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` with every occurrence of each of `secrets` replaced by `***`: the
/// last line of defence before a message that may quote a credential (a
/// proxy's reply, a database driver's error) is logged or shown.
pub fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// `text` with the password of `url` (any scheme: a database, a git
/// remote) replaced by `***`, raw or percent-decoded.
pub fn scrub_url_password(text: String, url: &str) -> String {
    scrub(text, &url_passwords(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence_and_ignores_empty_secrets() {
        let secrets = ["hunter2".to_owned(), String::new()];
        assert_eq!(
            scrub("pw hunter2, again hunter2".into(), &secrets),
            "pw ***, again ***"
        );
        assert_eq!(scrub("nothing here".into(), &secrets), "nothing here");
    }

    #[test]
    fn parses_references_and_hides_values() {
        assert_eq!(
            "env:KEY".parse::<SecretSource>(),
            Ok(SecretSource::Env("KEY".into()))
        );
        assert_eq!(
            "file:/run/key".parse::<SecretSource>(),
            Ok(SecretSource::File("/run/key".into()))
        );
        assert!("hunter2".parse::<SecretSource>().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = SecretSource::File(path.display().to_string())
            .read()
            .unwrap();
        assert_eq!(secret.expose(), b"s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
        assert!(super::constant_time_eq(b"", b""));
    }

    #[test]
    fn display_url_hides_passwords() {
        let cases = [
            (
                "postgres://alice:s3cret@db.example:5432/patchops",
                "postgres://alice:***@db.example:5432/patchops",
            ),
            (
                "postgresql://alice:p%40ss@db/patchops?sslmode=require&password=other",
                "postgresql://alice:***@db/patchops?sslmode=require&password=***",
            ),
            (
                "postgres://alice@db/patchops",
                "postgres://alice@db/patchops",
            ),
            ("postgres://alice:a@b/c@db/x", "postgres://alice:***@db/x"),
            (
                "postgres://db/x?password=pw",
                "postgres://db/x?password=***",
            ),
            (
                "sqlite:///var/lib/patchops.db",
                "sqlite:///var/lib/patchops.db",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, shown) in cases {
            assert_eq!(display_url(url), shown, "{url}");
        }
        let secrets = url_passwords("postgres://alice:p%40ss@db/x");
        assert!(secrets.contains(&"p%40ss".to_string()) && secrets.contains(&"p@ss".to_string()));
        assert_eq!(scrub("bad p@ss here".into(), &secrets), "bad *** here");
    }
}
