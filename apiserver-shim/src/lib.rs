//! oxetcd-apiserver: a thin Kubernetes API server that keeps its objects in
//! an etcd-API store, at kube-apiserver's keys and with its transaction
//! shapes, so that kubectl and Kubernetes clients work against it.
//!
//! By module:
//! - [`store`]: the store trait, embedded oxetcd and remote etcd;
//! - [`cache`]: the watch caches lists and watches are served from;
//! - [`registry`]: the kinds served; [`route`]: what a path names;
//! - [`crd`]: CustomResourceDefinitions and their resources' schemas;
//! - [`rest`]: the verbs (get, list, watch, create, update, patch, delete);
//! - [`discovery`]: /version, /api, /apis and the resource lists;
//! - [`table`]: meta.k8s.io Table responses (what kubectl get prints);
//! - [`schema`]: the kinds' schemas, the OpenAPI documents, field lookups;
//! - [`managed`]: metadata.managedFields and server-side apply;
//! - [`selector`], [`names`]: label/field selectors and name rules;
//! - [`error`]: every error as a Status, mapped to HTTP in one place;
//! - [`http`]: HTTPS (hyper 1 over rustls), authentication, negotiation;
//! - [`auth`], [`pki`], [`kubeconfig`], [`cli`], [`run`]: credentials,
//!   certificates, the printed kubeconfig, flags and start-up.

#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod cache;
pub mod cli;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod http;
pub mod kubeconfig;
pub mod managed;
pub mod names;
pub mod pki;
pub mod proto;
pub mod registry;
pub mod rest;
pub mod route;
pub mod run;
pub mod schema;
pub mod selector;
pub mod store;
pub mod table;
