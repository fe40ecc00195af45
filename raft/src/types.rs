//! The openraft type configuration: what a log entry carries and what applying it
//! returns.
//!
//! This crate does not know oxetcd's commands: it is generic over the
//! [`Payload`] of a normal entry, which the server defines (its typed command).
//! Entries live in memory as typed values; the WAL writes a payload's bytes
//! with [`Payload::encode`] and reads them back with [`Payload::decode`], and
//! the peer network carries them through serde (see [`crate::network`]).
//! [`Request`] is an opaque bytes payload for the crate's own tests and
//! benchmarks.

use std::cmp::Ordering;
use std::fmt;
use std::hash::Hash;
use std::io::Cursor;
use std::marker::PhantomData;

use bytes::Bytes;
use openraft::{BasicNode, RaftTypeConfig, TokioRuntime};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a normal log entry carries. Implementations keep the value typed in
/// memory; `encode` / `decode` are the on-disk form (the WAL's entry body,
/// see [`crate::wal`]), and serde is the peer network's form.
pub trait Payload:
    Clone + fmt::Debug + Default + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// What applying an entry of this payload answers to its proposer.
    type Response: fmt::Debug + Default + Send + Sync + Serialize + DeserializeOwned + 'static;

    /// Appends the payload's on-disk bytes to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);

    /// The payload whose on-disk bytes are `bytes` (a WAL entry body).
    fn decode(bytes: Bytes) -> Result<Self, String>;
}

/// oxetcd's Raft types over payload `P`: `u64` member IDs (etcd's member IDs),
/// peers addressed by [`BasicNode`], whole-buffer snapshots.
pub struct Types<P>(PhantomData<fn() -> P>);

impl<P: Payload> RaftTypeConfig for Types<P> {
    type D = P;
    type R = P::Response;
    type NodeId = NodeId;
    type Node = BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

// openraft wants the type configuration to be a plain marker: these hold for
// every `P` (derive would ask `P` for each of them).
impl<P> fmt::Debug for Types<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Types")
    }
}
impl<P> Clone for Types<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Types<P> {}
impl<P> Default for Types<P> {
    fn default() -> Self {
        Types(PhantomData)
    }
}
impl<P> PartialEq for Types<P> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<P> Eq for Types<P> {}
impl<P> PartialOrd for Types<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Types<P> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}
impl<P> Hash for Types<P> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A member ID.
pub type NodeId = u64;
/// A log entry over payload `P`.
pub type Entry<P> = openraft::Entry<Types<P>>;
/// A log ID (leader term and node, index).
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;

/// An opaque payload: bytes the WAL and the network carry as they are. The
/// crate's tests and the WAL benchmarks log it; applying it answers a
/// [`Response`]. Cloning is cheap: [`Bytes`] is reference-counted.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(pub Bytes);

/// The type configuration over opaque [`Request`]s.
pub type TypeConfig = Types<Request>;

impl Request {
    /// The payload's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Payload for Request {
    type Response = Response;

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.0);
    }

    fn decode(bytes: Bytes) -> Result<Self, String> {
        Ok(Request(bytes))
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

/// What applying a [`Request`] answers: bytes. Empty for blank and membership
/// entries.
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
        let entry: Entry<Request> = Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 7),
            payload: openraft::EntryPayload::Normal(Request::from(vec![9u8; 4])),
        };
        let json = serde_json::to_vec(&entry).expect("serialize");
        let back: Entry<Request> = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(entry.log_id, back.log_id);
        match back.payload {
            openraft::EntryPayload::Normal(r) => assert_eq!(r.bytes().as_ref(), &[9u8; 4]),
            _ => panic!("wrong payload"),
        }
    }
}
