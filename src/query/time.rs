//! Shape check for RFC 3339 timestamps such as `2026-11-24T02:00:00Z`.
//! Values are kept as written; only their validity matters here.

use std::ops::RangeInclusive;

use super::error::{char_range, LiteralError};

const HELP: &str =
    "write an RFC 3339 timestamp, e.g. `2026-11-24T02:00:00Z` or `2026-11-24T02:00:00+01:00`";

pub(super) fn check_timestamp(text: &str) -> Result<(), LiteralError> {
    let mut cursor = Cursor { text, at: 0 };
    let year = cursor.field(4, "year", 0..=9999)?;
    cursor.expect(&['-'], "`-`")?;
    let month = cursor.field(2, "month", 1..=12)?;
    cursor.expect(&['-'], "`-`")?;
    cursor.field(2, "day", 1..=days_in_month(year, month))?;
    cursor.expect(&['T', 't'], "`T` between the date and the time")?;
    cursor.clock(true)?;
    if cursor.eat('.') {
        cursor.fraction()?;
    }
    let zone = cursor.expect(&['Z', 'z', '+', '-'], "a time zone (`Z` or `+HH:MM`)")?;
    if zone == '+' || zone == '-' {
        cursor.clock(false)?;
    }
    if cursor.at < text.len() {
        return Err(cursor.unexpected("the end of the timestamp"));
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    /// `HH:MM:SS` when `seconds`, else `HH:MM` (a zone offset).
    fn clock(&mut self, seconds: bool) -> Result<(), LiteralError> {
        self.field(2, "hour", 0..=23)?;
        self.expect(&[':'], "`:`")?;
        self.field(2, "minute", 0..=59)?;
        if seconds {
            self.expect(&[':'], "`:`")?;
            // 60 is a leap second.
            self.field(2, "second", 0..=60)?;
        }
        Ok(())
    }

    fn field(
        &mut self,
        digits: usize,
        what: &str,
        valid: RangeInclusive<u32>,
    ) -> Result<u32, LiteralError> {
        let start = self.at;
        let Some(field) = self
            .text
            .get(start..start + digits)
            .filter(|field| field.bytes().all(|b| b.is_ascii_digit()))
        else {
            return Err(self.unexpected(&format!("a {digits}-digit {what}")));
        };
        self.at += digits;
        let value = field.bytes().fold(0, |n, b| n * 10 + u32::from(b - b'0'));
        if !valid.contains(&value) {
            return Err(LiteralError::new(
                start..self.at,
                format!(
                    "{what} `{field}` is out of range: expected {:0digits$} to {:0digits$}",
                    valid.start(),
                    valid.end()
                ),
            )
            .with_help(HELP));
        }
        Ok(value)
    }

    fn fraction(&mut self) -> Result<(), LiteralError> {
        let rest = self.text.get(self.at..).unwrap_or_default();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(self.unexpected("digits after `.`"));
        }
        self.at += digits;
        Ok(())
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self
            .text
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(c));
        if found {
            self.at += c.len_utf8();
        }
        found
    }

    fn expect(&mut self, options: &[char], expected: &str) -> Result<char, LiteralError> {
        match self
            .text
            .get(self.at..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) if options.contains(&c) => {
                self.at += c.len_utf8();
                Ok(c)
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn unexpected(&self, expected: &str) -> LiteralError {
        let range = char_range(self.text, self.at);
        let found = match self.text.get(range.clone()) {
            Some(c) if !c.is_empty() => format!("`{c}`"),
            _ => "the end".to_owned(),
        };
        LiteralError::new(
            range,
            format!("invalid timestamp: expected {expected}, found {found}"),
        )
        .with_help(HELP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc3339_timestamps() {
        for text in [
            "2026-11-24T02:00:00Z",
            "2026-11-24t02:00:00z",
            "2026-11-24T02:00:00.123456Z",
            "2026-11-24T02:00:00+01:00",
            "2026-11-24T02:00:00-05:30",
            "2024-02-29T23:59:60Z",
        ] {
            assert_eq!(check_timestamp(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_bad_field() {
        let cases = [
            (
                "2026-13-24T02:00:00Z",
                5..7,
                "month `13` is out of range: expected 01 to 12",
            ),
            (
                "2025-02-29T02:00:00Z",
                8..10,
                "day `29` is out of range: expected 01 to 28",
            ),
            (
                "2026-11-24 02:00:00Z",
                10..11,
                "invalid timestamp: expected `T` between the date and the time, found ` `",
            ),
            (
                "2026-11-24T24:00:00Z",
                11..13,
                "hour `24` is out of range: expected 00 to 23",
            ),
            (
                "2026-11-24T02:00:00",
                19..19,
                "invalid timestamp: expected a time zone (`Z` or `+HH:MM`), found the end",
            ),
            (
                "2026-11-24T02:00:00.Z",
                20..21,
                "invalid timestamp: expected digits after `.`, found `Z`",
            ),
            (
                "2026-11-24T02:00:00Zjunk",
                20..21,
                "invalid timestamp: expected the end of the timestamp, found `j`",
            ),
            (
                "26-11-24T02:00:00Z",
                0..1,
                "invalid timestamp: expected a 4-digit year, found `2`",
            ),
            (
                "2026-11-24T02:00:00+1:00",
                20..21,
                "invalid timestamp: expected a 2-digit hour, found `1`",
            ),
            (
                "2026-11-2é",
                8..9,
                "invalid timestamp: expected a 2-digit day, found `2`",
            ),
        ];
        for (text, range, message) in cases {
            let err = check_timestamp(text).unwrap_err();
            assert_eq!(
                (err.range, err.message.as_str()),
                (range, message),
                "{text}"
            );
        }
    }
}
