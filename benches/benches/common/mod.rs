//! What the criterion benchmarks share. Each bench target compiles this
//! module and uses part of it.
#![allow(dead_code)]

pub mod fixtures;

pub use fixtures::*;
