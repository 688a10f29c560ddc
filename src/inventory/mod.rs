//! Inventory: the machines of the site and their facts.

mod import;
mod machine;
#[doc(hidden)]
pub mod synthetic;

pub use import::{
    canonicalize_machine, parse_inventory, parse_inventory_bytes, validate_machine, FieldProblem,
    Found, ImportError, InventoryFormat, Location, Problem, ARCHITECTURES, MAX_INVENTORY_BYTES,
    MAX_MACHINES, MAX_PROBLEMS, OS_TYPES,
};
pub use machine::{machine_key, Hardware, Installed, IpFacts, Machine, OsFacts};
