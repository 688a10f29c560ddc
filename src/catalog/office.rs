//! The Office update catalog (stub).
use super::model::*;
use super::{CatalogError, CatalogReader, Loaded};

pub const ROOT: &str = "OfficeUpdateCatalog";

#[derive(Debug, Clone, Copy, Default)]
pub struct OfficeReader;

impl CatalogReader for OfficeReader {
    fn kind(&self) -> CatalogKind {
        CatalogKind::Office
    }
    fn read(&self, _bytes: &[u8]) -> Result<Loaded, CatalogError> {
        Err(CatalogError::NoRoot)
    }
}
