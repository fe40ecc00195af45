//! The write path: commands in, one at a time through the state machine, made
//! durable in groups, answered after the fsync.

pub mod command;
mod proposer;
mod watchdog;

pub use proposer::Proposer;
