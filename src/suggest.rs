//! "Did you mean …?" for misspelt field names, values, kinds and references.

/// The candidate closest to `word`, if any is close enough to be a likely
/// typo (a different case counts as close).
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let score = if candidate.to_lowercase() == lower {
            2.0
        } else {
            strsim::jaro_winkler(&lower, &candidate.to_lowercase())
        };
        if score >= 0.85 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// `a, b, c` with backticks, for "expected one of" messages.
pub fn one_of<'a, I>(items: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    items
        .into_iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_names_only() {
        let fields = ["limitingCollection", "membership", "evaluation", "comment"];
        assert_eq!(
            did_you_mean("limitngCollection", fields),
            Some("limitingCollection")
        );
        assert_eq!(did_you_mean("Membership", fields), Some("membership"));
        assert_eq!(did_you_mean("schedule", fields), None);
    }
}
