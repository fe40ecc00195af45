//! The gRPC services, each over the member ([`oxetcd_server::EtcdServer`]).

mod auth;
mod caller;
mod cluster;
mod election;
pub mod grpc_metrics;
mod health;
pub mod http;
mod kv;
mod lease;
mod local;
mod lock;
mod maintenance;
pub mod metrics;
mod snapshot;
mod watch;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use local::Local;
pub use lock::LockService;
pub use maintenance::MaintenanceService;
pub use watch::{WatchServer, WatchService};

use std::sync::Arc;

use oxetcd_server::EtcdServer;

/// What every service holds: the member.
type Shared = Arc<EtcdServer>;
