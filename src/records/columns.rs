//! How stored columns become the records' fields, for `sqlx::FromRow`:
//! a column whose stored form differs (epoch milliseconds shown as RFC
//! 3339, JSON text, a missing product stored as the empty text, Q numbers
//! as one comma-separated text) is read as one of these newtypes and
//! converted by the derive's `try_from`.

use super::{rfc3339_from_epoch_ms, DpProblem, ReconcileProblem};

/// Epoch milliseconds, shown as RFC 3339 UTC text.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct EpochMs(i64);

impl From<EpochMs> for String {
    fn from(ms: EpochMs) -> String {
        rfc3339_from_epoch_ms(ms.0)
    }
}

/// A list stored as JSON text.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct JsonText(String);

impl TryFrom<JsonText> for Vec<ReconcileProblem> {
    type Error = serde_json::Error;
    fn try_from(text: JsonText) -> Result<Self, Self::Error> {
        serde_json::from_str(&text.0)
    }
}

impl TryFrom<JsonText> for Vec<DpProblem> {
    type Error = serde_json::Error;
    fn try_from(text: JsonText) -> Result<Self, Self::Error> {
        serde_json::from_str(&text.0)
    }
}

/// A key column that cannot be NULL: empty for none.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct EmptyIsNone(String);

impl From<EmptyIsNone> for Option<String> {
    fn from(text: EmptyIsNone) -> Self {
        (!text.0.is_empty()).then_some(text.0)
    }
}

/// A list stored as one comma-separated text.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct CommaList(String);

impl From<CommaList> for Vec<String> {
    fn from(text: CommaList) -> Self {
        text.0
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}
