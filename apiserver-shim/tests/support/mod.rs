//! Helpers the integration tests share; each test file includes this
//! directory with `mod support;` and uses what it needs.

#![allow(dead_code)]

pub mod apiserver;
pub mod certs;
pub mod etcd;
pub mod kubectl;
pub mod tools;
