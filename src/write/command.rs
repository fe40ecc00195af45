//! The commands of the write path. Every mutation is one `Command`, a protobuf
//! message, so that what a state machine applies is exactly what a log holds.

use oxetcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};

/// One write request, as logged and applied.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(oneof = "Request", tags = "1, 2, 3, 4")]
    pub request: Option<Request>,
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
}

/// The result of applying a command.
#[derive(Debug)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
}

impl From<Request> for Command {
    fn from(request: Request) -> Self {
        Command {
            request: Some(request),
        }
    }
}
