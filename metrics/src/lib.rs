//! oxetcd's Prometheus metrics, under etcd 3.4's names, types, labels and
//! buckets, so that etcd's dashboards and alerts read them unchanged.
//!
//! Every family lives in one process-wide registry. Each is counted where
//! its event happens, in the crate that sees it:
//!
//! - [`disk()`]: the Raft log's fdatasync (raft/, `wal/segment.rs`) and the
//!   store's batch commits to its engine (storage/, `write_buffer.rs`);
//! - [`mvcc()`]: puts, deletes, ranges and txns as the server applies and
//!   serves them (server/, `apply/`), and the database's sizes and key count;
//! - [`server()`]: leadership, proposals (server/, `replication/`) and the
//!   member's identity;
//! - [`network()`]: peer round trips (raft/, `network/client.rs`) and client
//!   gRPC message bytes;
//! - [`grpc()`]: go-grpc-prometheus' `grpc_server_*` families, counted by the
//!   front end's gRPC layer;
//! - process_* gauges, read from /proc at each scrape (Linux).
//!
//! Observations are atomic adds on handles resolved once (no lock, no
//! allocation, no label lookup per request). Gauges whose truth lives
//! elsewhere (leadership, sizes, the applied index) are set by the server just
//! before each scrape, from the state it keeps anyway.
//!
//! ```
//! oxetcd_metrics::init(oxetcd_metrics::Level::Basic);
//! oxetcd_metrics::mvcc().put_total.inc();
//! assert!(oxetcd_metrics::encode().contains("etcd_mvcc_put_total"));
//! ```

mod families;
mod grpc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock};

use prometheus::{Encoder, Registry, TextEncoder};

/// A histogram handle, resolved once (e.g. per peer) and observed with an
/// atomic add.
pub use prometheus::Histogram;

pub use families::{Disk, Mvcc, Network, Server};
pub use grpc::{Grpc, GrpcMethod, GrpcType, GRPC_CODES, GRPC_METHODS};

/// How much `/metrics` shows: etcd's `--metrics basic|extensive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Every family but the gRPC handling-time histogram.
    Basic,
    /// Also `grpc_server_handling_seconds` (one histogram per method).
    Extensive,
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Level::Basic),
            "extensive" => Ok(Level::Extensive),
            other => Err(format!(
                "unknown metrics level {other:?} (want basic or extensive)"
            )),
        }
    }
}

static LEVEL: OnceLock<Level> = OnceLock::new();
/// Whether handling times are observed: true only at `Level::Extensive`, so
/// that basic pays for no clock reads.
static EXTENSIVE: AtomicBool = AtomicBool::new(false);

/// Sets the level, once, before serving; later calls keep the first level.
pub fn init(level: Level) {
    let level = *LEVEL.get_or_init(|| level);
    EXTENSIVE.store(level == Level::Extensive, Ordering::Relaxed);
}

/// Whether gRPC handling times are measured (`--metrics extensive`).
pub fn handling_time_enabled() -> bool {
    EXTENSIVE.load(Ordering::Relaxed)
}

static DISK: LazyLock<Disk> = LazyLock::new(Disk::new);
static MVCC: LazyLock<Mvcc> = LazyLock::new(Mvcc::new);
static SERVER: LazyLock<Server> = LazyLock::new(Server::new);
static NETWORK: LazyLock<Network> = LazyLock::new(Network::new);
static GRPC: LazyLock<Grpc> = LazyLock::new(Grpc::new);

pub fn disk() -> &'static Disk {
    &DISK
}

pub fn mvcc() -> &'static Mvcc {
    &MVCC
}

pub fn server() -> &'static Server {
    &SERVER
}

pub fn network() -> &'static Network {
    &NETWORK
}

pub fn grpc() -> &'static Grpc {
    &GRPC
}

/// Every family, registered once at the level `init` set (basic if none).
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let level = *LEVEL.get_or_init(|| Level::Basic);
    let registry = Registry::new();
    let mut collectors = Vec::new();
    disk().collectors(&mut collectors);
    mvcc().collectors(&mut collectors);
    server().collectors(&mut collectors);
    network().collectors(&mut collectors);
    grpc().collectors(level, &mut collectors);
    collectors.push(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ));
    for c in collectors {
        // Names are fixed and distinct (a test checks): a failure here is a
        // bug in this crate, found by its own tests.
        if let Err(e) = registry.register(c) {
            panic!("metrics registry: {e}");
        }
    }
    registry
});

/// Every family in Prometheus' text format (version 0.0.4), sorted by name.
pub fn encode() -> String {
    let families = REGISTRY.gather();
    let mut out = Vec::new();
    // Encoding into a Vec fails only on a family the registry would not hold.
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        return format!("# encoding metrics failed: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_etcd_names_them() {
        assert_eq!("basic".parse::<Level>(), Ok(Level::Basic));
        assert_eq!("extensive".parse::<Level>(), Ok(Level::Extensive));
        assert!("full".parse::<Level>().is_err());
    }

    #[test]
    fn the_registry_holds_every_family_once() {
        let text = encode();
        for name in [
            "etcd_disk_wal_fsync_duration_seconds",
            "etcd_disk_backend_commit_duration_seconds",
            "etcd_mvcc_put_total",
            "etcd_server_has_leader",
            "grpc_server_started_total",
            "process_resident_memory_bytes",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
    }
}
