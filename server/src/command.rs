//! The commands of the write path. Every mutation is one `Command`, a protobuf
//! message, so that what a state machine applies is exactly what a log holds.

use crate::error::EtcdError;
use oxetcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};

/// One write request, as logged and applied; or a batch of key writes that
/// arrived together, logged as one entry (one append, one fsync, one store
/// batch for all of them) and applied in order, each at its own revision.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(oneof = "Request", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub request: Option<Request>,
    /// Encoded `Command`s, each one key write (put, delete, txn); set only
    /// when `request` is not. Their results come back as [`Outcomes`].
    #[prost(bytes = "bytes", repeated, tag = "16")]
    pub batch: Vec<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    #[prost(message, tag = "1")]
    Put(PutRequest),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    #[prost(message, tag = "4")]
    Compact(CompactionRequest),
    #[prost(message, tag = "5")]
    Publish(MemberAttributes),
    /// The ID is always set: the member that took the request chose it.
    #[prost(message, tag = "6")]
    LeaseGrant(LeaseGrantRequest),
    #[prost(message, tag = "7")]
    LeaseRevoke(LeaseRevokeRequest),
    /// The leader's decision that these leases expired.
    #[prost(message, tag = "8")]
    LeaseExpire(ExpiredLeases),
    #[prost(message, tag = "9")]
    LeaseCheckpoint(LeaseCheckpointRequest),
}

/// Leases the leader found expired, revoked in order, each at its own
/// revision. Ones already gone are skipped, so applying it twice (a replay
/// after a crash midway) changes nothing more.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExpiredLeases {
    #[prost(int64, repeated, tag = "1")]
    pub ids: Vec<i64>,
    /// The term of the leader that decided it (0 in entries older than this
    /// field). Logged in a later term, the decision is stale (its leader lost
    /// the lead meanwhile, and the leases may have been renewed since) and
    /// revokes nothing.
    #[prost(uint64, tag = "2")]
    pub term: u64,
}

impl ExpiredLeases {
    /// Whether this decision, logged in term `logged_in`, was made by the
    /// leader of an earlier term.
    pub fn is_stale(&self, logged_in: u64) -> bool {
        self.term != 0 && self.term != logged_in
    }
}

/// A member's own attributes, published through the log once it serves (as
/// etcd's members do), so every member can list every other's name and client
/// URLs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberAttributes {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, repeated, tag = "3")]
    pub client_urls: Vec<String>,
    /// The cluster's ID, sent by the members that bootstrap it (0 from a
    /// member that joined): recorded once, so joining members learn it.
    #[prost(uint64, tag = "4")]
    pub cluster_id: u64,
}

/// The result of applying a command.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Response {
    #[prost(message, tag = "1")]
    Put(PutResponse),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeResponse),
    #[prost(message, tag = "3")]
    Txn(TxnResponse),
    #[prost(message, tag = "4")]
    Compact(CompactionResponse),
    #[prost(message, tag = "5")]
    Published(MemberAttributes),
    #[prost(message, tag = "6")]
    LeaseGrant(LeaseGrantResponse),
    #[prost(message, tag = "7")]
    LeaseRevoke(LeaseRevokeResponse),
    /// The leases that were still there and got revoked.
    #[prost(message, tag = "8")]
    LeaseExpire(ExpiredLeases),
    #[prost(message, tag = "9")]
    LeaseCheckpoint(LeaseCheckpointResponse),
}

/// A command's result as a replicated log's response carries it: the
/// response, or the error applying it gave (the same on every member).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outcome {
    #[prost(oneof = "Response", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub response: Option<Response>,
    /// `EtcdError::wire_code` of the refusal; 0 when there is a response.
    #[prost(uint32, tag = "15")]
    pub refused: u32,
}

/// The results of a batch command: one encoded [`Outcome`] per command, in
/// order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outcomes {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub outcomes: Vec<bytes::Bytes>,
}

impl Outcome {
    /// Encodes an apply result. Fatal errors never get here: they stop the
    /// member before anything is answered.
    pub fn from_result(result: Result<Response, EtcdError>) -> Self {
        match result {
            Ok(response) => Outcome {
                response: Some(response),
                refused: 0,
            },
            Err(e) => Outcome {
                response: None,
                refused: e.wire_code(),
            },
        }
    }

    pub fn into_result(self) -> Result<Response, EtcdError> {
        match (self.response, self.refused) {
            (Some(response), 0) => Ok(response),
            (_, code) => Err(EtcdError::from_wire_code(code)),
        }
    }
}

impl From<Request> for Command {
    fn from(request: Request) -> Self {
        Command {
            request: Some(request),
            batch: Vec::new(),
        }
    }
}

/// A client request that becomes one command, and the response of its own
/// kind that applying it gives.
pub trait Proposal {
    type Response;
    fn into_request(self) -> Request;
    /// The response of this request's kind. Applying a request always gives
    /// a response of its own kind (`apply::apply`); any other is a bug,
    /// reported as a storage failure rather than a wrong answer.
    fn response(applied: Response) -> Result<Self::Response, EtcdError>;
}

macro_rules! proposal {
    ($($request:ty => $variant:ident($response:ty)),* $(,)?) => {$(
        impl Proposal for $request {
            type Response = $response;
            fn into_request(self) -> Request {
                Request::$variant(self)
            }
            fn response(applied: Response) -> Result<$response, EtcdError> {
                match applied {
                    Response::$variant(r) => Ok(r),
                    other => Err(EtcdError::Storage(format!(
                        "a {} was answered with {other:?}",
                        stringify!($variant)
                    ))),
                }
            }
        }
    )*};
}

proposal! {
    PutRequest => Put(PutResponse),
    DeleteRangeRequest => DeleteRange(DeleteRangeResponse),
    TxnRequest => Txn(TxnResponse),
    CompactionRequest => Compact(CompactionResponse),
    LeaseGrantRequest => LeaseGrant(LeaseGrantResponse),
    LeaseRevokeRequest => LeaseRevoke(LeaseRevokeResponse),
}
