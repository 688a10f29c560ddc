//! Dotted numeric versions such as `5.1.2600`.

use std::cmp::Ordering;

use super::error::LiteralError;
use crate::excerpt::of as excerpt;

/// Compares two versions component by component, numerically: `5.1.2600` is
/// newer than `5.1.999`, and missing components count as `0`, so `5.1` equals
/// `5.1.0`.
///
/// Any input is accepted, so inventory data can be compared without checks:
/// components of any length compare exactly, and a non-numeric component
/// sorts after every numeric one and among its peers by text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a.split('.'), b.split('.'));
    loop {
        let (l, r) = match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (l, r) => (l.unwrap_or("0"), r.unwrap_or("0")),
        };
        match component_key(l).cmp(&component_key(r)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
}

/// An ordering key: numbers first, by magnitude (digit count, then digits,
/// which avoids overflow); other text after.
fn component_key(component: &str) -> (bool, usize, &str) {
    if component.bytes().all(|b| b.is_ascii_digit()) {
        let digits = component.trim_start_matches('0');
        (false, digits.len(), digits)
    } else {
        (true, 0, component)
    }
}

/// Checks that `text` is a dotted numeric version literal like `5.1.2600`.
pub(super) fn check_version(text: &str) -> Result<(), LiteralError> {
    let help = "a version is numbers separated by dots, e.g. `5.1.2600`";
    let mut start = 0;
    for part in text.split('.') {
        let end = start + part.len();
        if part.is_empty() {
            let at = start.min(text.len());
            let range = at..(at + 1).min(text.len());
            return Err(LiteralError::new(range, "missing number in version").with_help(help));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(LiteralError::new(
                start..end,
                format!("invalid version component `{}`", excerpt(part)),
            )
            .with_help(help));
        }
        start = end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    #[test]
    fn compares_numerically_per_component() {
        assert_eq!(compare_versions("5.1.2600", "5.1.999"), Greater);
        assert_eq!(compare_versions("5.2", "5.1.2600"), Greater);
        assert_eq!(compare_versions("5.1", "5.1.0"), Equal);
        assert_eq!(compare_versions("5.1.0.0", "5.1"), Equal);
        assert_eq!(compare_versions("5.01", "5.1"), Equal);
        assert_eq!(compare_versions("4.0", "10.0"), Less);
        assert_eq!(compare_versions("5.1.1", "5.1"), Greater);
    }

    #[test]
    fn huge_and_odd_components_do_not_overflow_or_panic() {
        let huge = "99999999999999999999999999999999";
        assert_eq!(compare_versions(&format!("1.{huge}"), "1.2"), Greater);
        assert_eq!(compare_versions("1.beta", "1.99"), Greater);
        assert_eq!(compare_versions("1.alpha", "1.beta"), Less);
        assert_eq!(compare_versions("", "0"), Equal);
    }

    #[test]
    fn version_literals_must_be_dotted_numbers() {
        assert!(check_version("5").is_ok());
        assert!(check_version("5.1.2600").is_ok());
        assert_eq!(check_version("5.1.x").unwrap_err().range, 4..5);
        assert_eq!(check_version("5..1").unwrap_err().range, 2..3);
        assert_eq!(check_version("5.1.").unwrap_err().range, 4..4);
        assert_eq!(check_version("").unwrap_err().range, 0..0);
        assert_eq!(
            check_version("v5").unwrap_err().message,
            "invalid version component `v5`"
        );
    }
}
