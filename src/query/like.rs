//! WQL `like` patterns: `%` matches any run of characters, `_` exactly one,
//! `[abc]`, `[a-z]` and `[^abc]` one character from (or not from) a set.
//! Matching ignores case, as WQL does.

use super::error::{char_range, LiteralError};

/// A compiled `like` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikePattern {
    source: String,
    atoms: Vec<Atom>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    AnyRun,
    AnyChar,
    Char(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl LikePattern {
    pub(super) fn compile(source: &str) -> Result<Self, LiteralError> {
        let mut atoms = Vec::new();
        let mut at = 0;
        while let Some(c) = source[at..].chars().next() {
            let (atom, next) = match c {
                '%' => (Atom::AnyRun, at + 1),
                '_' => (Atom::AnyChar, at + 1),
                '[' => {
                    let close = source[at..].find(']').map(|i| at + i).ok_or_else(|| {
                        LiteralError::new(char_range(source, at), "unbalanced `[` in like pattern")
                            .with_help("close the character class with `]`, or write `[[]` to match a literal `[`")
                    })?;
                    (class(source, at, close)?, close + 1)
                }
                other => (Atom::Char(other), at + other.len_utf8()),
            };
            atoms.push(atom);
            at = next;
        }
        Ok(Self {
            source: source.to_owned(),
            atoms,
        })
    }

    /// The pattern as written, without quotes.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Where to resume after the latest `%`: its atom index and the text
        // position it currently stretches to. Every other atom consumes exactly
        // one character, so retrying only the latest `%` is complete and keeps
        // matching O(pattern × text) without recursion.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.atoms.get(p) {
                Some(Atom::AnyRun) => {
                    backtrack = Some((p, t));
                    p += 1;
                }
                Some(atom) if atom.matches_char(text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((run, start)) => {
                        backtrack = Some((run, start + 1));
                        p = run + 1;
                        t = start + 1;
                    }
                    None => return false,
                },
            }
        }
        self.atoms
            .get(p..)
            .unwrap_or_default()
            .iter()
            .all(|atom| *atom == Atom::AnyRun)
    }
}

/// Compiles the class `source[open..=close]`, where `open` is the `[`.
fn class(source: &str, open: usize, close: usize) -> Result<Atom, LiteralError> {
    let body = &source[open + 1..close];
    let (negated, body) = match body.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    if body.is_empty() {
        return Err(
            LiteralError::new(open..close + 1, "empty character class in like pattern")
                .with_help("list at least one character, e.g. `[abc]` or `[a-z]`"),
        );
    }
    let body_start = close - body.len();
    let mut ranges = Vec::new();
    let mut chars = body.char_indices();
    while let Some((at, low)) = chars.next() {
        let mut lookahead = chars.clone();
        // A `-` first or last in the class is a literal dash, as in WQL.
        let high = match (lookahead.next(), lookahead.next()) {
            (Some((_, '-')), Some((end_at, high))) => {
                if low > high {
                    let range = body_start + at..body_start + end_at + high.len_utf8();
                    return Err(LiteralError::new(
                        range,
                        format!("invalid range `{low}-{high}` in like pattern"),
                    )
                    .with_help(format!("write the lower bound first: `{high}-{low}`")));
                }
                chars = lookahead;
                high
            }
            _ => low,
        };
        ranges.push((low, high));
    }
    Ok(Atom::Class { negated, ranges })
}

impl Atom {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Atom::AnyRun | Atom::AnyChar => true,
            Atom::Char(expected) => fold(*expected) == fold(c),
            Atom::Class { negated, ranges } => {
                let variants = [c, fold(c), upper(c)];
                let hit = ranges
                    .iter()
                    .any(|&(low, high)| variants.iter().any(|v| (low..=high).contains(v)));
                hit != *negated
            }
        }
    }
}

/// Simple one-to-one case folding; characters whose lowercase form is
/// several characters long are compared as they are.
fn fold(c: char) -> char {
    single(c.to_lowercase()).unwrap_or(c)
}

fn upper(c: char) -> char {
    single(c.to_uppercase()).unwrap_or(c)
}

fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str) -> LikePattern {
        LikePattern::compile(pattern).expect("valid pattern")
    }

    #[test]
    fn percent_matches_any_run() {
        let p = like("Microsoft Windows%");
        assert!(p.matches("Microsoft Windows XP Professional"));
        assert!(p.matches("Microsoft Windows"));
        assert!(!p.matches("Microsoft Window"));
        assert!(like("%XP%").matches("Windows XP Pro"));
        assert!(like("%").matches(""));
        assert!(like("a%b%c").matches("aXXbYYbc"));
        assert!(!like("a%b%c").matches("aXXbYYbd"));
    }

    #[test]
    fn underscore_matches_exactly_one_char() {
        let p = like("5._");
        assert!(p.matches("5.1"));
        assert!(p.matches("5.é"));
        assert!(!p.matches("5."));
        assert!(!p.matches("5.12"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(like("[abc]x").matches("bx"));
        assert!(!like("[abc]x").matches("dx"));
        assert!(like("srv[0-9][0-9]").matches("srv42"));
        assert!(!like("srv[0-9]").matches("srvx"));
        assert!(like("[^abc]").matches("d"));
        assert!(
            !like("[^abc]").matches("A"),
            "negated classes ignore case too"
        );
        assert!(like("[-a]").matches("-"), "a leading dash is literal");
        assert!(like("[a-]").matches("-"), "a trailing dash is literal");
        assert!(like("100[%]").matches("100%"));
        assert!(!like("100[%]").matches("1000"));
        assert!(like("[[]x]").matches("[x]"));
    }

    #[test]
    fn matching_ignores_case() {
        assert!(like("microsoft WINDOWS%").matches("Microsoft Windows 2000"));
        assert!(like("[A-Z]x").matches("qX"));
        assert!(like("[a-z]").matches("Q"));
        assert!(like("ÉTÉ").matches("été"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let text = "a".repeat(5_000);
        let pattern = like(&format!("{}b", "%a".repeat(50)));
        assert!(!pattern.matches(&text));
    }

    #[test]
    fn unbalanced_bracket_points_at_it() {
        let err = LikePattern::compile("ab[cd").unwrap_err();
        assert_eq!(err.range, 2..3);
        assert_eq!(err.message, "unbalanced `[` in like pattern");
    }

    #[test]
    fn bad_classes_are_rejected() {
        assert_eq!(LikePattern::compile("x[]").unwrap_err().range, 1..3);
        assert_eq!(LikePattern::compile("[^]").unwrap_err().range, 0..3);
        let err = LikePattern::compile("[z-a]").unwrap_err();
        assert_eq!(err.range, 1..4);
        assert_eq!(err.message, "invalid range `z-a` in like pattern");
    }

    #[test]
    fn source_is_kept() {
        assert_eq!(like("a[b-c]%").source(), "a[b-c]%");
    }
}
