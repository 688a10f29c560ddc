//! `inventory scan-import`: machines' scan facts evaluated against a
//! catalog, their patch states stored. The caller has read and checked every
//! file first, so a bad file imports nothing.

use crate::applicability::{self, Counts, Engine, ScanFacts};
use crate::catalog::Catalog;
use crate::inventory::machine_key;
use crate::site::Site;

use super::OpError;

/// What a scan import stored.
#[derive(Debug, Clone, Copy)]
pub struct Imported {
    /// Patch states written.
    pub states: usize,
    pub counts: Counts,
}

/// The facts files' machine names, checked to be distinct (as the store
/// keys them: names ignore case).
pub fn check_distinct(all: &[ScanFacts]) -> Result<(), OpError> {
    let mut seen = std::collections::HashSet::new();
    for facts in all {
        if !seen.insert(machine_key(&facts.machine)) {
            return Err(OpError::Input(format!(
                "machine `{}` has more than one scan-facts file",
                facts.machine
            )));
        }
    }
    Ok(())
}

/// Evaluates each machine's facts against `catalog` at `now` and replaces
/// its stored states of this catalog's scan agent (a scan with the other
/// catalog type keeps its own), `batch` machines per write.
pub async fn import(
    store: &Site,
    catalog: &Catalog,
    all: &[ScanFacts],
    batch: usize,
    now: jiff::Timestamp,
) -> Result<Imported, OpError> {
    let engine = Engine::new(catalog);
    let agent = applicability::scan_agent(catalog.kind);
    let mut counts = Counts::default();
    let mut states = 0;
    for chunk in all.chunks(batch.max(1)) {
        let mut rows = Vec::new();
        let mut machines = Vec::with_capacity(chunk.len());
        for facts in chunk {
            let evaluated = engine.evaluate(facts, now);
            for state in &evaluated {
                counts.add(state.status);
            }
            rows.extend(evaluated.iter().map(|s| s.stored(&facts.machine)));
            machines.push(machine_key(&facts.machine));
        }
        states += store.replace_scan_states(&machines, agent, &rows).await?;
    }
    Ok(Imported { states, counts })
}
