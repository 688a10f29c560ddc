//! Diff (stub).
pub struct CatalogDiff;
pub fn diff() {}
