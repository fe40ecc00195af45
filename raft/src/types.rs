//! The openraft type configuration: what a log entry carries and what applying it
//! returns.
//!
//! This crate does not know oxetcd's commands. The server encodes its prost
//! `Command` into a [`Request`] before proposing it and decodes it again in the
//! state machine; the WAL stores the bytes as they are (see [`crate::wal`]'s format).

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// oxetcd's Raft types: opaque encoded commands, `u64` member IDs (etcd's member
    /// IDs), peers addressed by [`openraft::BasicNode`], whole-buffer snapshots.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A member ID.
pub type NodeId = u64;
/// A log entry of [`TypeConfig`].
pub type Entry = openraft::Entry<TypeConfig>;
/// A log ID (leader term and node, index) of [`TypeConfig`].
pub type LogId = openraft::LogId<NodeId>;
/// A vote of [`TypeConfig`].
pub type Vote = openraft::Vote<NodeId>;

/// One proposed write: a command already encoded by the server (a prost
/// `Command`). Cloning is cheap: [`Bytes`] is reference-counted.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(pub Bytes);

impl Request {
    /// The encoded command.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for Request {
    fn from(bytes: Bytes) -> Self {
        Request(bytes)
    }
}

impl From<Vec<u8>> for Request {
    fn from(bytes: Vec<u8>) -> Self {
        Request(Bytes::from(bytes))
    }
}

// Entries are logged by openraft at debug level: print the size, not the bytes.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} bytes)", self.0.len())
    }
}

/// The result of applying one entry, as the state machine returns it to the
/// proposer: the encoded response (for the server, a prost response message).
/// Empty for blank and membership entries.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(pub Bytes);

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_serde_round_trip() {
        let req = Request::from(vec![1u8, 2, 3]);
        let json = serde_json::to_string(&req).expect("serialize");
        let back: Request = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(req, back);
        assert_eq!(format!("{req:?}"), "Request(3 bytes)");
    }

    #[test]
    fn entry_with_request_serde_round_trip() {
        let entry = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 7),
            payload: openraft::EntryPayload::Normal(Request::from(vec![9u8; 4])),
        };
        let json = serde_json::to_vec(&entry).expect("serialize");
        let back: Entry = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(entry.log_id, back.log_id);
        match back.payload {
            openraft::EntryPayload::Normal(r) => assert_eq!(r.bytes().as_ref(), &[9u8; 4]),
            _ => panic!("wrong payload"),
        }
    }
}
