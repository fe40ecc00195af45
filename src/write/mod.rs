//! What the write path carries and guards: the command format (what the Raft
//! log holds) and the watchdog on a stuck apply. The path itself runs through
//! `crate::replication`.

pub mod command;
pub mod watchdog;
