//! The meaning of the small text values manifests carry: durations, times,
//! sizes, host names and URLs. Pure functions with precise error messages.

use std::time::Duration;

/// Parses `30s`, `5m`, `1h30m`, `1d`, `2w`. Zero is refused: every duration
/// in a manifest is an interval or a limit, and zero means neither.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(patchops::units::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(patchops::units::parse_duration("1 day").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected =
        "expected a duration such as `30s`, `5m`, `1h30m`, `1d` or `7d` (units: s, m, h, d, w)";
    if text.is_empty() {
        return Err(expected.into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("unknown unit `{c}`; {expected}")),
        };
        if digits.is_empty() {
            return Err(format!("a unit without a number; {expected}"));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| "the duration is too long".to_string())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or("the duration is too long")?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("a number without a unit; {expected}"));
    }
    if total == 0 {
        return Err("the duration must be longer than zero".into());
    }
    if total > 10 * 365 * 86_400 {
        return Err("the duration is longer than ten years".into());
    }
    Ok(Duration::from_secs(total))
}

/// A time as manifests give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleTime {
    /// One instant everywhere (the text had an offset, e.g. `Z`).
    Instant(jiff::Timestamp),
    /// A wall-clock time in each client's own time zone.
    Local(jiff::civil::DateTime),
}

pub fn parse_time(text: &str) -> Result<ScheduleTime, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ScheduleTime::Instant(ts));
    }
    let has_offset =
        text.ends_with(['Z', 'z']) || text.get(19..).is_some_and(|tail| tail.contains(['+', '-']));
    if !has_offset {
        if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
            if text.contains('T') || text.contains(' ') {
                return Ok(ScheduleTime::Local(dt));
            }
        }
    }
    Err("expected an RFC 3339 time such as `2026-11-24T02:00:00Z` (or without `Z` for the client's local time)".into())
}

/// Parses `500KB`, `50MB`, `2GB` (also with a space) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let expected = "expected a size such as `500KB`, `50MB` or `2GB`";
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("a number without a unit; {expected}"))?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| expected.to_string())?;
    let factor: u64 = match unit.trim() {
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err(expected.into()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| "the size is too large".to_string())
}

/// A NetBIOS-compatible machine or host name: letters, digits and hyphens,
/// optionally with dots (a DNS name), at most 63 characters per label.
pub fn check_host_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err("expected a host name: letters, digits and hyphens, with dots between labels".into())
    }
}

/// What an `http(s)://` URL in a manifest may not be: malformed, or
/// carrying credentials (which would leak into plans and state).
pub fn check_url(text: &str, schemes: &[&str]) -> Result<(), UrlProblem> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UrlProblem::Malformed(format!(
            "expected a URL starting with {}",
            schemes
                .iter()
                .map(|s| format!("`{s}://`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    };
    if !schemes.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(UrlProblem::Malformed(format!(
            "unsupported URL scheme `{scheme}`; expected {}",
            schemes
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(UrlProblem::Credentials);
    }
    if scheme != "file" && authority.is_empty() {
        return Err(UrlProblem::Malformed("the URL has no host".into()));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlProblem::Malformed(
            "the URL contains spaces or control characters".into(),
        ));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum UrlProblem {
    Malformed(String),
    Credentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60m"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("0m")
            .unwrap_err()
            .contains("longer than zero"));
        assert!(parse_duration("5").unwrap_err().contains("without a unit"));
        assert!(parse_duration("5 days")
            .unwrap_err()
            .contains("unknown unit ` `"));
        assert!(parse_duration("1y")
            .unwrap_err()
            .contains("unknown unit `y`"));
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn times() {
        assert!(matches!(
            parse_time("2026-11-24T02:00:00Z"),
            Ok(ScheduleTime::Instant(_))
        ));
        assert!(matches!(
            parse_time("2026-11-24T02:00:00+01:00"),
            Ok(ScheduleTime::Instant(_))
        ));
        assert!(matches!(
            parse_time("2026-11-24T02:00:00"),
            Ok(ScheduleTime::Local(_))
        ));
        assert!(parse_time("2026-13-24T02:00:00Z").is_err());
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("2026-11-24").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50MB"), Ok(50 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("50mb").is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(check_url("http://dp-hq:8080/x", &["http", "https"]), Ok(()));
        assert_eq!(
            check_url("http://u:p@proxy:3128", &["http"]),
            Err(UrlProblem::Credentials)
        );
        assert!(matches!(
            check_url("ftp://x", &["http"]),
            Err(UrlProblem::Malformed(_))
        ));
        assert!(matches!(
            check_url("dp-hq:8080", &["http"]),
            Err(UrlProblem::Malformed(_))
        ));
    }
}
