//! Inventory: the machines of the site and their facts.

mod machine;

pub use machine::{machine_key, Hardware, Installed, IpFacts, Machine, OsFacts};
