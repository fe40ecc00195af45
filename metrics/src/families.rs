//! The etcd families, grouped as etcd's packages define them (wal and
//! backend, mvcc, etcdserver, rafthttp and v3rpc), each with etcd 3.4's name,
//! help text, type, labels and buckets.

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntGauge,
    IntGaugeVec, Opts,
};

/// Exponential buckets; the arguments are constants checked by the tests.
fn buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, factor, count).unwrap_or_default()
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("histogram {name}: {e}"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| panic!("counter {name}: {e}"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| panic!("gauge {name}: {e}"))
}

fn labelled_gauge(name: &str, help: &str, label: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| panic!("gauge {name}: {e}"))
}

/// etcd's wal and backend packages: how long the disk takes.
pub struct Disk {
    /// One fdatasync of the Raft log's active segment (etcd: WAL fsync).
    pub wal_fsync_seconds: Histogram,
    /// One batch of applied changes written to the storage engine (etcd: a
    /// bbolt commit).
    pub backend_commit_seconds: Histogram,
}

impl Disk {
    pub(crate) fn new() -> Self {
        Self {
            wal_fsync_seconds: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                buckets(0.001, 2.0, 14),
            ),
            backend_commit_seconds: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                buckets(0.001, 2.0, 14),
            ),
        }
    }

    pub(crate) fn collectors(&self, out: &mut Vec<Box<dyn Collector>>) {
        out.push(Box::new(self.wal_fsync_seconds.clone()));
        out.push(Box::new(self.backend_commit_seconds.clone()));
    }
}

/// etcd's mvcc package: the operations the store saw and what it holds.
pub struct Mvcc {
    /// Puts applied by this member (each put of a txn counts).
    pub put_total: IntCounter,
    /// Delete-range operations applied by this member (one per operation,
    /// however many keys it deletes, as etcd counts).
    pub delete_total: IntCounter,
    /// Range operations this member ran (served reads, a put's or delete's
    /// previous values, a txn's reads and compares).
    pub range_total: IntCounter,
    /// Txns of more than one operation (compares count), as etcd counts.
    pub txn_total: IntCounter,
    /// Live keys (set at each scrape from the store's index count).
    pub keys_total: IntGauge,
    /// The database's size on disk (set at each scrape).
    pub db_total_size_in_bytes: IntGauge,
    /// The part of it that holds data (set at each scrape).
    pub db_total_size_in_use_in_bytes: IntGauge,
}

impl Mvcc {
    pub(crate) fn new() -> Self {
        Self {
            put_total: counter(
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            delete_total: counter(
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            range_total: counter(
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            txn_total: counter(
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            keys_total: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            db_total_size_in_bytes: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_total_size_in_use_in_bytes: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
        }
    }

    pub(crate) fn collectors(&self, out: &mut Vec<Box<dyn Collector>>) {
        out.push(Box::new(self.put_total.clone()));
        out.push(Box::new(self.delete_total.clone()));
        out.push(Box::new(self.range_total.clone()));
        out.push(Box::new(self.txn_total.clone()));
        out.push(Box::new(self.keys_total.clone()));
        out.push(Box::new(self.db_total_size_in_bytes.clone()));
        out.push(Box::new(self.db_total_size_in_use_in_bytes.clone()));
    }
}

/// etcd's etcdserver package: leadership, proposals, identity.
pub struct Server {
    /// 1 while this member knows a leader (set at each scrape).
    pub has_leader: IntGauge,
    /// 1 while this member leads (set at each scrape).
    pub is_leader: IntGauge,
    /// Times this member saw the leader change to another known leader.
    pub leader_changes_seen_total: IntCounter,
    /// The Raft log's committed index (set at each scrape; etcd's is a gauge).
    pub proposals_committed_total: IntGauge,
    /// The last index applied to the store (set at each scrape).
    pub proposals_applied_total: IntGauge,
    /// Writes proposed by this member and not yet applied.
    pub proposals_pending: IntGauge,
    /// Writes proposed by this member that Raft failed (no result).
    pub proposals_failed_total: IntCounter,
    /// Log entries whose apply took longer than etcd's warning threshold.
    pub slow_apply_total: IntCounter,
    /// 1 for `server_id`, this member's ID in hex.
    id: IntGaugeVec,
    /// 1 for `server_version`.
    version: IntGaugeVec,
    /// 1 for `cluster_version`.
    cluster_version: IntGaugeVec,
    /// The backend quota in bytes.
    pub quota_backend_bytes: Gauge,
}

impl Server {
    pub(crate) fn new() -> Self {
        Self {
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes_seen_total: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed_total: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied_total: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed_total: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            slow_apply_total: counter(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            id: labelled_gauge(
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                "server_id",
            ),
            version: labelled_gauge(
                "etcd_server_version",
                "Which version is running. 1 for 'server_version' label with current version.",
                "server_version",
            ),
            cluster_version: labelled_gauge(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                "cluster_version",
            ),
            quota_backend_bytes: Gauge::new(
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            )
            .unwrap_or_else(|e| panic!("gauge quota: {e}")),
        }
    }

    /// Names this member: its ID (hex, as etcd prints it), the etcd version
    /// it speaks and the cluster version (major.minor). Called once at start.
    pub fn set_identity(&self, member_id: u64, server_version: &str, cluster_version: &str) {
        self.id
            .with_label_values(&[&format!("{member_id:x}")])
            .set(1);
        self.version.with_label_values(&[server_version]).set(1);
        self.cluster_version
            .with_label_values(&[cluster_version])
            .set(1);
    }

    pub(crate) fn collectors(&self, out: &mut Vec<Box<dyn Collector>>) {
        out.push(Box::new(self.has_leader.clone()));
        out.push(Box::new(self.is_leader.clone()));
        out.push(Box::new(self.leader_changes_seen_total.clone()));
        out.push(Box::new(self.proposals_committed_total.clone()));
        out.push(Box::new(self.proposals_applied_total.clone()));
        out.push(Box::new(self.proposals_pending.clone()));
        out.push(Box::new(self.proposals_failed_total.clone()));
        out.push(Box::new(self.slow_apply_total.clone()));
        out.push(Box::new(self.id.clone()));
        out.push(Box::new(self.version.clone()));
        out.push(Box::new(self.cluster_version.clone()));
        out.push(Box::new(self.quota_backend_bytes.clone()));
    }
}

/// etcd's rafthttp and v3rpc packages: peers and client bytes.
pub struct Network {
    /// Round trips of Raft messages to each peer, by its ID in hex (`To`).
    peer_round_trip_seconds: HistogramVec,
    /// gRPC message bytes received from clients (the protobuf payloads,
    /// without gRPC's 5-byte frame headers, as etcd's codec counts).
    pub client_grpc_received_bytes_total: IntCounter,
    /// gRPC message bytes sent to clients.
    pub client_grpc_sent_bytes_total: IntCounter,
}

impl Network {
    pub(crate) fn new() -> Self {
        Self {
            peer_round_trip_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "etcd_network_peer_round_trip_time_seconds",
                    "Round-Trip-Time histogram between peers",
                )
                .buckets(buckets(0.0001, 2.0, 16)),
                &["To"],
            )
            .unwrap_or_else(|e| panic!("histogram rtt: {e}")),
            client_grpc_received_bytes_total: counter(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            client_grpc_sent_bytes_total: counter(
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
        }
    }

    /// The round-trip histogram of the peer `to`: resolved once per peer
    /// connection, observed per message without a label lookup.
    pub fn peer_round_trip(&self, to: u64) -> Histogram {
        self.peer_round_trip_seconds
            .with_label_values(&[&format!("{to:x}")])
    }

    pub(crate) fn collectors(&self, out: &mut Vec<Box<dyn Collector>>) {
        out.push(Box::new(self.peer_round_trip_seconds.clone()));
        out.push(Box::new(self.client_grpc_received_bytes_total.clone()));
        out.push(Box::new(self.client_grpc_sent_bytes_total.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_buckets_are_etcds() {
        let d = Disk::new();
        d.wal_fsync_seconds.observe(0.0015);
        let m = d.wal_fsync_seconds.collect();
        let h = m[0].get_metric()[0].get_histogram();
        let bounds: Vec<f64> = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
        assert_eq!(bounds.len(), 14);
        assert_eq!(bounds[0], 0.001);
        assert_eq!(bounds[13], 8.192);
        // 1.5 ms falls in the 2 ms bucket, not the 1 ms one.
        assert_eq!(h.get_bucket()[0].cumulative_count(), 0);
        assert_eq!(h.get_bucket()[1].cumulative_count(), 1);
    }

    #[test]
    fn peer_round_trips_are_labelled_by_hex_id_with_etcds_buckets() {
        let n = Network::new();
        n.peer_round_trip(0xabc).observe(0.0002);
        let m = n.peer_round_trip_seconds.collect();
        let metric = &m[0].get_metric()[0];
        assert_eq!(metric.get_label()[0].name(), "To");
        assert_eq!(metric.get_label()[0].value(), "abc");
        let bounds = metric.get_histogram().get_bucket();
        assert_eq!(bounds.len(), 16);
        assert!((bounds[15].upper_bound() - 3.2768).abs() < 1e-9);
    }
}
