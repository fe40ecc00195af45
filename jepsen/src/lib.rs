//! oxetcd-jepsen: a Jepsen-style consistency tester for etcd-API clusters.
//!
//! A run starts an N-member cluster of a server binary (oxetcd or etcd) as
//! real processes, drives concurrent clients for a set time while a nemesis
//! injects faults on a seeded schedule, records every operation in a
//! [`history`], checks it, and writes a report directory.
//!
//! The checkers work on any history, recorded or hand-made:
//!
//! ```
//! use oxetcd_jepsen::check::{register, Validity};
//! use oxetcd_jepsen::history::{Call, Op, Outcome};
//!
//! let op = |process, invoke, complete, call| Op {
//!     process, invoke, complete, outcome: Outcome::Ok, call, error: None,
//! };
//! let history = vec![
//!     op(0, 0, 10, Call::Write { key: "k".into(), value: 1 }),
//!     op(1, 20, 30, Call::Read { key: "k".into(), value: None }), // stale
//! ];
//! let verdict = register::check(&history, register::DEFAULT_BUDGET);
//! assert_eq!(verdict.validity, Validity::Invalid);
//! ```
//!
//! Modules: [`history`] (operations, JSON lines), [`check`] (the checkers),
//! [`cluster`] (member processes, network namespaces, faults), [`nemesis`]
//! (the seeded fault schedule), [`client`] (gRPC connections), [`auth`]
//! (runs with etcd's auth enabled: setup, tokens, their refresh),
//! [`convergence`] (the members agree at the end), [`powerfs`] (a FUSE file
//! system that loses unsynced writes on a power cut),
//! [`workload`] (what the clients do), [`report`] (the run directory and its
//! HTML page), [`run`] (a whole run, top to bottom), [`options`] (a run's
//! command-line flags), [`campaign`] (runs of a plan, one after another,
//! with an index of their verdicts).

pub mod auth;
pub mod campaign;
pub mod check;
pub mod client;
pub mod cluster;
pub mod convergence;
pub mod error;
pub mod history;
pub mod nemesis;
pub mod options;
pub mod powerfs;
pub mod report;
pub mod run;
pub mod workload;
