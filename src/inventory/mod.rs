//! Inventory: the machines of the site and their facts.

mod import;
mod machine;
mod problem;
pub mod property;
mod validation;

pub use import::{
    parse_inventory, parse_inventory_bytes, InventoryFormat, MAX_INVENTORY_BYTES, MAX_MACHINES,
    MAX_PROBLEMS,
};
pub use machine::{machine_key, Hardware, Installed, IpFacts, Machine, OsFacts};
pub use problem::{FieldProblem, Found, ImportError, Location, Problem};
pub use property::{ARCHITECTURES, OS_TYPES};
pub use validation::{canonicalize_machine, validate_machine};
