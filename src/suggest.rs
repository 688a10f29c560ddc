//! "Did you mean …?" for misspelt field names, values, kinds, references
//! and query properties: one notion of "close" everywhere.

/// Inputs longer than this get no suggestion: they are not typos of short
/// names, and edit distance costs grow with the product of the lengths.
const MAX_INPUT_CHARS: usize = 64;

/// Similarity (0 to 1) at or above which a candidate is offered.
const THRESHOLD: f64 = 0.5;

/// The candidate most similar to `word` (ignoring case), if any is similar
/// enough to be a likely typo; the earliest wins a tie. The word itself is
/// never suggested.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    if word.chars().count() > MAX_INPUT_CHARS {
        return None;
    }
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|candidate| (similarity(&word_lower, candidate), candidate))
        .filter(|(score, _)| *score >= THRESHOLD)
        .min_by(|a, b| b.0.total_cmp(&a.0))
        .map(|(_, candidate)| candidate)
}

fn similarity(word_lower: &str, candidate: &str) -> f64 {
    let candidate = candidate.to_lowercase();
    let whole = strsim::normalized_damerau_levenshtein(word_lower, &candidate);
    // People often leave out a namespace: `memoryMB` for `hardware.memoryMB`.
    let last_segment = candidate.rsplit('.').next().unwrap_or_default();
    whole.max(strsim::normalized_damerau_levenshtein(
        word_lower,
        last_segment,
    ))
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
        assert_eq!(
            did_you_mean("comment", fields),
            None,
            "never the word itself"
        );
    }

    #[test]
    fn suggests_typos_and_missing_namespaces() {
        let names = ["name", "os.name", "os.version", "hardware.memoryMB"];
        assert_eq!(did_you_mean("os.nam", names), Some("os.name"));
        assert_eq!(did_you_mean("OS.VERSOIN", names), Some("os.version"));
        assert_eq!(did_you_mean("memorymb", names), Some("hardware.memoryMB"));
        assert_eq!(did_you_mean("nam", names), Some("name"));
        assert_eq!(did_you_mean("zzz", names), None);
        assert_eq!(did_you_mean(&"n".repeat(100), names), None);
    }
}
