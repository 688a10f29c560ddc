//! Caller-supplied text quoted in an error message, cut short so a huge
//! value does not turn the message into a wall of text.

/// Characters of a value an excerpt keeps.
pub const MAX_CHARS: usize = 40;

/// `text`, cut after [`MAX_CHARS`] characters (on a character boundary)
/// with `…` appended when it was longer.
pub fn of(text: &str) -> String {
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_long_text_on_a_character_boundary() {
        assert_eq!(super::of("short"), "short");
        let long = "é".repeat(50);
        assert_eq!(super::of(&long), format!("{}…", "é".repeat(40)));
        assert_eq!(super::of(&"x".repeat(40)), "x".repeat(40));
    }
}
