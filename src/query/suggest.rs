//! "Did you mean" suggestions for misspelt names.

/// Inputs longer than this get no suggestion: they are not typos of short
/// names, and edit distance costs grow with the product of the lengths.
const MAX_INPUT_CHARS: usize = 64;

/// Similarity (0 to 1) at or above which a candidate is offered.
const THRESHOLD: f64 = 0.5;

/// The candidate most similar to `input` (ignoring case), if any is similar
/// enough to be a likely typo; the earliest wins a tie.
pub(super) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if input.chars().count() > MAX_INPUT_CHARS {
        return None;
    }
    let input = input.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| (similarity(&input, candidate), candidate))
        .filter(|(score, _)| *score >= THRESHOLD)
        .min_by(|a, b| b.0.total_cmp(&a.0))
        .map(|(_, candidate)| candidate)
}

fn similarity(input: &str, candidate: &str) -> f64 {
    let candidate = candidate.to_lowercase();
    let whole = strsim::normalized_damerau_levenshtein(input, &candidate);
    // People often leave out the namespace: `memoryMB` for `hardware.memoryMB`.
    let last_segment = candidate.rsplit('.').next().unwrap_or_default();
    whole.max(strsim::normalized_damerau_levenshtein(input, last_segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_and_missing_namespaces() {
        let names = ["name", "os.name", "os.version", "hardware.memoryMB"];
        assert_eq!(closest("os.nam", names), Some("os.name"));
        assert_eq!(closest("OS.VERSOIN", names), Some("os.version"));
        assert_eq!(closest("memorymb", names), Some("hardware.memoryMB"));
        assert_eq!(closest("nam", names), Some("name"));
        assert_eq!(closest("zzz", names), None);
        assert_eq!(closest(&"n".repeat(100), names), None);
    }
}
