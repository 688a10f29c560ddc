//! `patchops agent`: the client side of the loop (see `docs/agent.md`).

pub mod queue;
pub mod schedule;
pub mod state;
