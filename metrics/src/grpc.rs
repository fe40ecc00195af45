//! go-grpc-prometheus' server families, as etcd registers them: started and
//! handled RPCs by `grpc_type`, `grpc_service`, `grpc_method` (and
//! `grpc_code`), with every method's series present from the start (etcd
//! initializes them all at 0), and the handling-time histogram only with
//! `--metrics extensive`.
//!
//! Every (method, code) counter is resolved here once, so that counting an
//! RPC is an index into a table and an atomic add.

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::Level;

/// go-grpc-prometheus' `grpc_type` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// One RPC of the client port.
#[derive(Debug)]
pub struct GrpcMethod {
    pub service: &'static str,
    pub method: &'static str,
    pub kind: GrpcType,
}

const fn m(service: &'static str, method: &'static str, kind: GrpcType) -> GrpcMethod {
    GrpcMethod {
        service,
        method,
        kind,
    }
}

use GrpcType::{BidiStream, ServerStream, Unary};

/// Every RPC etcd 3.4 initializes, plus the lock and election services
/// oxetcd also serves on the client port (etcd creates their series at their
/// first call).
pub const GRPC_METHODS: &[GrpcMethod] = &[
    m("etcdserverpb.KV", "Range", Unary),
    m("etcdserverpb.KV", "Put", Unary),
    m("etcdserverpb.KV", "DeleteRange", Unary),
    m("etcdserverpb.KV", "Txn", Unary),
    m("etcdserverpb.KV", "Compact", Unary),
    m("etcdserverpb.Watch", "Watch", BidiStream),
    m("etcdserverpb.Lease", "LeaseGrant", Unary),
    m("etcdserverpb.Lease", "LeaseRevoke", Unary),
    m("etcdserverpb.Lease", "LeaseKeepAlive", BidiStream),
    m("etcdserverpb.Lease", "LeaseTimeToLive", Unary),
    m("etcdserverpb.Lease", "LeaseLeases", Unary),
    m("etcdserverpb.Cluster", "MemberAdd", Unary),
    m("etcdserverpb.Cluster", "MemberRemove", Unary),
    m("etcdserverpb.Cluster", "MemberUpdate", Unary),
    m("etcdserverpb.Cluster", "MemberList", Unary),
    m("etcdserverpb.Cluster", "MemberPromote", Unary),
    m("etcdserverpb.Maintenance", "Alarm", Unary),
    m("etcdserverpb.Maintenance", "Status", Unary),
    m("etcdserverpb.Maintenance", "Defragment", Unary),
    m("etcdserverpb.Maintenance", "Hash", Unary),
    m("etcdserverpb.Maintenance", "HashKV", Unary),
    m("etcdserverpb.Maintenance", "Snapshot", ServerStream),
    m("etcdserverpb.Maintenance", "MoveLeader", Unary),
    m("etcdserverpb.Auth", "AuthEnable", Unary),
    m("etcdserverpb.Auth", "AuthDisable", Unary),
    m("etcdserverpb.Auth", "Authenticate", Unary),
    m("etcdserverpb.Auth", "UserAdd", Unary),
    m("etcdserverpb.Auth", "UserGet", Unary),
    m("etcdserverpb.Auth", "UserList", Unary),
    m("etcdserverpb.Auth", "UserDelete", Unary),
    m("etcdserverpb.Auth", "UserChangePassword", Unary),
    m("etcdserverpb.Auth", "UserGrantRole", Unary),
    m("etcdserverpb.Auth", "UserRevokeRole", Unary),
    m("etcdserverpb.Auth", "RoleAdd", Unary),
    m("etcdserverpb.Auth", "RoleGet", Unary),
    m("etcdserverpb.Auth", "RoleList", Unary),
    m("etcdserverpb.Auth", "RoleDelete", Unary),
    m("etcdserverpb.Auth", "RoleGrantPermission", Unary),
    m("etcdserverpb.Auth", "RoleRevokePermission", Unary),
    m("grpc.health.v1.Health", "Check", Unary),
    m("grpc.health.v1.Health", "Watch", ServerStream),
    m("v3lockpb.Lock", "Lock", Unary),
    m("v3lockpb.Lock", "Unlock", Unary),
    m("v3electionpb.Election", "Campaign", Unary),
    m("v3electionpb.Election", "Proclaim", Unary),
    m("v3electionpb.Election", "Leader", Unary),
    m("v3electionpb.Election", "Observe", ServerStream),
    m("v3electionpb.Election", "Resign", Unary),
];

/// gRPC's status codes by number (0..=16), named as grpc-go prints them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The status code a handler's end is counted under when the code is not one
/// of gRPC's (grpc-go's own mapping).
const UNKNOWN: usize = 2;

/// go-grpc-prometheus' histogram buckets (client_golang's DefBuckets).
const HANDLING_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Grpc {
    started_family: IntCounterVec,
    handled_family: IntCounterVec,
    handling_family: HistogramVec,
    /// `started[i]`: RPCs of `GRPC_METHODS[i]` started.
    started: Vec<IntCounter>,
    /// `handled[i * 17 + code]`: RPCs of `GRPC_METHODS[i]` ended with `code`.
    handled: Vec<IntCounter>,
    /// `handling[i]`: handling times of `GRPC_METHODS[i]`.
    handling: Vec<Histogram>,
}

impl Grpc {
    pub(crate) fn new() -> Self {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started_family = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &labels,
        )
        .unwrap_or_else(|e| panic!("grpc started: {e}"));
        let handled_family = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )
        .unwrap_or_else(|e| panic!("grpc handled: {e}"));
        let handling_family = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            )
            .buckets(HANDLING_BUCKETS.to_vec()),
            &labels,
        )
        .unwrap_or_else(|e| panic!("grpc handling: {e}"));
        let mut started = Vec::with_capacity(GRPC_METHODS.len());
        let mut handled = Vec::with_capacity(GRPC_METHODS.len() * GRPC_CODES.len());
        let mut handling = Vec::with_capacity(GRPC_METHODS.len());
        for method in GRPC_METHODS {
            let values = [method.kind.label(), method.service, method.method];
            started.push(started_family.with_label_values(&values));
            handling.push(handling_family.with_label_values(&values));
            for code in GRPC_CODES {
                handled.push(handled_family.with_label_values(&[
                    method.kind.label(),
                    method.service,
                    method.method,
                    code,
                ]));
            }
        }
        Self {
            started_family,
            handled_family,
            handling_family,
            started,
            handled,
            handling,
        }
    }

    /// The index in [`GRPC_METHODS`] of the RPC at HTTP path `path`
    /// (`/package.Service/Method`), if it is one of them.
    pub fn method_index(path: &str) -> Option<usize> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        GRPC_METHODS
            .iter()
            .position(|m| m.service == service && m.method == method)
    }

    /// An RPC of `GRPC_METHODS[method]` started.
    pub fn started(&self, method: usize) {
        if let Some(c) = self.started.get(method) {
            c.inc();
        }
    }

    /// An RPC of `GRPC_METHODS[method]` ended with status `code` (its number).
    pub fn handled(&self, method: usize, code: i32) {
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < GRPC_CODES.len())
            .unwrap_or(UNKNOWN);
        if let Some(c) = self.handled.get(method * GRPC_CODES.len() + code) {
            c.inc();
        }
    }

    /// An RPC of `GRPC_METHODS[method]` took `seconds` to handle.
    pub fn observe_handling(&self, method: usize, seconds: f64) {
        if let Some(h) = self.handling.get(method) {
            h.observe(seconds);
        }
    }

    pub(crate) fn collectors(&self, level: Level, out: &mut Vec<Box<dyn Collector>>) {
        out.push(Box::new(self.started_family.clone()));
        out.push(Box::new(self.handled_family.clone()));
        if level == Level::Extensive {
            out.push(Box::new(self.handling_family.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_methods_and_nothing_else() {
        let i = Grpc::method_index("/etcdserverpb.Watch/Watch").unwrap();
        assert_eq!(GRPC_METHODS[i].kind, GrpcType::BidiStream);
        assert_eq!(Grpc::method_index("/etcdserverpb.KV/Nope"), None);
        assert_eq!(Grpc::method_index("/metrics"), None);
        assert_eq!(Grpc::method_index("etcdserverpb.KV/Range"), None);
    }

    #[test]
    fn each_method_and_code_has_its_own_counter() {
        let g = Grpc::new();
        let watch = Grpc::method_index("/etcdserverpb.Watch/Watch").unwrap();
        let range = Grpc::method_index("/etcdserverpb.KV/Range").unwrap();
        g.handled(watch, 1);
        g.handled(watch, 1);
        g.handled(range, 0);
        g.handled(range, 99);
        let count = |m: usize, code: usize| g.handled[m * GRPC_CODES.len() + code].get();
        assert_eq!(count(watch, 1), 2);
        assert_eq!(count(watch, 0), 0);
        assert_eq!(count(range, 0), 1);
        assert_eq!(count(range, UNKNOWN), 1);
        let families = g.handled_family.collect();
        assert_eq!(
            families[0].get_metric().len(),
            GRPC_METHODS.len() * GRPC_CODES.len()
        );
    }
}
