//! Inventory: the machines of the site and their facts.

mod machine;
#[doc(hidden)]
pub mod synthetic;

pub use machine::{machine_key, Hardware, Installed, IpFacts, Machine, OsFacts};
