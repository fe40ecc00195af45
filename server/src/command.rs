//! The commands of the write path: what the Raft log holds, and what applying
//! an entry answers.
//!
//! Every mutation is one [`Command`], a protobuf message, so that what a state
//! machine applies is exactly what a log holds. In memory an entry's command
//! is a typed value ([`LogCommand`]): the proposer builds it, Raft carries it,
//! the state machine applies it. Each write is encoded once, by its proposer
//! (the batch's encoding is its writes' put together, and the same bytes go
//! to the WAL and to every follower), and decoded once per member: the leader
//! decodes its proposer's own bytes once, so that the typed write holds
//! compact buffers rather than the client's receive buffers (which it would
//! keep alive in the WAL's cache); a follower decodes what the network
//! brought. [`command_decodes`] counts the decodes, [`applied_commands`] the
//! applies.
//!
//! # Log format (version 1, `<data-dir>/oxetcd/FORMAT`)
//! A normal entry's body in the WAL (`oxetcd_raft`'s entry record, kind 1) is
//! an encoded `Command`:
//!
//! | field | tag | what |
//! |---|---|---|
//! | `request` | 1-10 | one request ([`Request`]'s variants and tags) |
//! | `batch` | 16 | key writes that arrived together, each a [`KeyWrite`] |
//!
//! A `KeyWrite` is the `Command` of one key write (tags 1-3): releases
//! before typed commands declared `batch` as `repeated bytes` holding encoded
//! `Command`s, which is the same wire format, so their logs read as they are
//! (tests/datadir_compat.rs starts a data dir they wrote). A change that is
//! not wire-compatible needs a new format version and an upgrade of old logs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use oxetcd_raft::Payload;
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::EtcdError;
use oxetcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleDeleteRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, LeaseCheckpointRequest, LeaseCheckpointResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};

/// One write request, as logged and applied; or a batch of key writes that
/// arrived together, logged as one entry (one append, one fsync, one store
/// batch for all of them) and applied in order, each at its own revision.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(oneof = "Request", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    pub request: Option<Request>,
    /// Key writes; set only when `request` is not. Applying answers one
    /// result for each, in order.
    #[prost(message, repeated, tag = "16")]
    pub batch: Vec<KeyWrite>,
}

/// The field number of [`Command::batch`].
pub(crate) const BATCH_TAG: u32 = 16;

/// One key write of a batch: wire-compatible with a [`Command`] holding a
/// put, a delete or a txn.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyWrite {
    #[prost(oneof = "KeyWriteRequest", tags = "1, 2, 3")]
    pub request: Option<KeyWriteRequest>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum KeyWriteRequest {
    #[prost(message, tag = "1")]
    Put(PutRequest),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
}

/// A key write, borrowed from a lone [`Request`] or a batch's [`KeyWrite`]:
/// what the applier takes, so both apply through one function.
#[derive(Clone, Copy, Debug)]
pub enum KeyWriteRef<'a> {
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    Txn(&'a TxnRequest),
}

impl KeyWrite {
    pub fn as_ref(&self) -> Option<KeyWriteRef<'_>> {
        Some(match self.request.as_ref()? {
            KeyWriteRequest::Put(p) => KeyWriteRef::Put(p),
            KeyWriteRequest::DeleteRange(d) => KeyWriteRef::DeleteRange(d),
            KeyWriteRequest::Txn(t) => KeyWriteRef::Txn(t),
        })
    }

    /// The same write as a lone request.
    pub fn into_request(self) -> Option<Request> {
        Some(match self.request? {
            KeyWriteRequest::Put(p) => Request::Put(p),
            KeyWriteRequest::DeleteRange(d) => Request::DeleteRange(d),
            KeyWriteRequest::Txn(t) => Request::Txn(t),
        })
    }
}

impl Request {
    /// The request as a key write, when it only changes keys: such requests
    /// of one log entry share one store batch.
    pub fn as_key_write(&self) -> Option<KeyWriteRef<'_>> {
        match self {
            Request::Put(p) => Some(KeyWriteRef::Put(p)),
            Request::DeleteRange(d) => Some(KeyWriteRef::DeleteRange(d)),
            Request::Txn(t) => Some(KeyWriteRef::Txn(t)),
            _ => None,
        }
    }

    /// The request as a key write that can join a batch, or itself back.
    pub fn into_key_write(self) -> Result<KeyWrite, Request> {
        let request = match self {
            Request::Put(p) => KeyWriteRequest::Put(p),
            Request::DeleteRange(d) => KeyWriteRequest::DeleteRange(d),
            Request::Txn(t) => KeyWriteRequest::Txn(t),
            other => return Err(other),
        };
        Ok(KeyWrite {
            request: Some(request),
        })
    }

    /// The request's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Put(_) => "put",
            Request::DeleteRange(_) => "delete range",
            Request::Txn(_) => "txn",
            Request::Compact(_) => "compaction",
            Request::Publish(_) => "member publish",
            Request::LeaseGrant(_) => "lease grant",
            Request::LeaseRevoke(_) => "lease revoke",
            Request::LeaseExpire(_) => "lease expiry",
            Request::LeaseCheckpoint(_) => "lease checkpoint",
            Request::Alarm(_) => "alarm",
            Request::Auth(_) => "auth change",
            Request::Authorized(_) => "authorized request",
        }
    }
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
    /// Raises, disarms or lists alarms (see `alarm`).
    #[prost(message, tag = "10")]
    Alarm(AlarmRequest),
    /// Changes the auth state (see `auth`).
    #[prost(message, tag = "11")]
    Auth(AuthCommand),
    /// A client's request checked against the auth state at a revision:
    /// applied only if the auth state has not changed since (see `auth`).
    #[prost(message, tag = "12")]
    Authorized(Authorized),
}

/// One change of the auth state, as etcd's `InternalRaftRequest` carries
/// them. Passwords travel hashed: the member that took the request hashed
/// them, so no password is ever logged.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthCommand {
    #[prost(oneof = "AuthChange", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    pub change: Option<AuthChange>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AuthChange {
    #[prost(message, tag = "1")]
    Enable(AuthEnableRequest),
    #[prost(message, tag = "2")]
    Disable(AuthDisableRequest),
    /// A simple token given to a user whose password the proposer checked.
    #[prost(message, tag = "3")]
    Authenticate(SimpleToken),
    /// `password` empty, `hashed_password` set (or `no_password`).
    #[prost(message, tag = "4")]
    UserAdd(AuthUserAddRequest),
    #[prost(message, tag = "5")]
    UserDelete(AuthUserDeleteRequest),
    /// `password` empty, `hashed_password` set.
    #[prost(message, tag = "6")]
    UserChangePassword(AuthUserChangePasswordRequest),
    #[prost(message, tag = "7")]
    UserGrantRole(AuthUserGrantRoleRequest),
    #[prost(message, tag = "8")]
    UserRevokeRole(AuthUserRevokeRoleRequest),
    #[prost(message, tag = "9")]
    RoleAdd(AuthRoleAddRequest),
    #[prost(message, tag = "10")]
    RoleDelete(AuthRoleDeleteRequest),
    #[prost(message, tag = "11")]
    RoleGrantPermission(AuthRoleGrantPermissionRequest),
    #[prost(message, tag = "12")]
    RoleRevokePermission(AuthRoleRevokePermissionRequest),
}

/// A simple token, assigned to `name` on every member when applied.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleToken {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub token: String,
}

/// A request checked against the auth state at `auth_revision` (etcd's
/// `RequestHeader.auth_revision`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authorized {
    #[prost(uint64, tag = "1")]
    pub auth_revision: u64,
    #[prost(message, optional, boxed, tag = "2")]
    pub command: Option<Box<Command>>,
}

/// What an applied auth change answers: the auth revision after it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthApplied {
    #[prost(uint64, tag = "1")]
    pub auth_revision: u64,
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
    #[prost(message, tag = "10")]
    Alarm(AlarmResponse),
    #[prost(message, tag = "11")]
    Auth(AuthApplied),
}

/// A command's result as a replicated log's response carries it: the
/// response, or the error applying it gave (the same on every member).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outcome {
    #[prost(oneof = "Response", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub response: Option<Response>,
    /// `EtcdError::wire_code` of the refusal; 0 when there is a response.
    #[prost(uint32, tag = "15")]
    pub refused: u32,
}

/// Applied results as they cross the wire: one [`Outcome`] per command, in
/// order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outcomes {
    #[prost(message, repeated, tag = "1")]
    pub outcomes: Vec<Outcome>,
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

    /// [`Outcome::from_result`] of a borrowed result.
    pub fn from_result_ref(result: &Result<Response, EtcdError>) -> Self {
        match result {
            Ok(response) => Outcome {
                response: Some(response.clone()),
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

impl Command {
    /// Key writes that arrived together, as one entry.
    pub fn batch(writes: Vec<KeyWrite>) -> Self {
        Command {
            request: None,
            batch: writes,
        }
    }
}

/// Commands (a batch counts each of its writes) decoded by this process: the
/// write path's check that each command is decoded once per member.
static COMMAND_DECODES: AtomicU64 = AtomicU64::new(0);

/// Commands this process applied: what the decodes are counted against.
static APPLIED_COMMANDS: AtomicU64 = AtomicU64::new(0);

/// How many commands this process has decoded (see [`COMMAND_DECODES`]).
pub fn command_decodes() -> u64 {
    COMMAND_DECODES.load(Ordering::Relaxed)
}

/// How many commands this process has applied.
pub fn applied_commands() -> u64 {
    APPLIED_COMMANDS.load(Ordering::Relaxed)
}

pub(crate) fn count_applied(command: &Command) {
    APPLIED_COMMANDS.fetch_add(command.commands(), Ordering::Relaxed);
}

impl Command {
    /// How many commands this is: a batch's writes, or one request.
    fn commands(&self) -> u64 {
        match self.request {
            Some(_) => 1,
            None => self.batch.len() as u64,
        }
    }

    /// Decodes `encoded` (counted), its fields sharing that buffer.
    pub(crate) fn decode_counted(encoded: Bytes) -> Result<Command, prost::DecodeError> {
        let command = Command::decode(encoded)?;
        COMMAND_DECODES.fetch_add(command.commands(), Ordering::Relaxed);
        Ok(command)
    }
}

impl KeyWrite {
    /// The write and its encoding, the write's fields in that one compact
    /// buffer: encoded, then decoded from it (counted), so that nothing of the
    /// buffers it was built from (a client's request) stays alive with it.
    pub(crate) fn compact(self) -> Result<(KeyWrite, Bytes), prost::DecodeError> {
        let encoded = Bytes::from(self.encode_to_vec());
        drop(self);
        let compact = KeyWrite::decode(encoded.clone())?;
        COMMAND_DECODES.fetch_add(1, Ordering::Relaxed);
        Ok((compact, encoded))
    }
}

/// A log entry's command, typed, with its encoding once it has one: the
/// Raft payload. Clones share both (the WAL, each follower's replication
/// stream and the state machine hold the same value).
#[derive(Clone, Default)]
pub struct LogCommand(Arc<Logged>);

#[derive(Default)]
struct Logged {
    command: Command,
    /// The command's bytes: made by the first encode (the WAL's or the
    /// network's, whichever comes first), or the bytes it was decoded from.
    encoded: OnceLock<Bytes>,
}

impl LogCommand {
    pub fn new(command: Command) -> Self {
        LogCommand(Arc::new(Logged {
            command,
            encoded: OnceLock::new(),
        }))
    }

    /// A command with its encoding made already (`encoded` must be what
    /// encoding `command` gives): the batcher puts a batch's together from
    /// its writes', which their proposers encoded in parallel.
    pub(crate) fn with_encoding(command: Command, encoded: Bytes) -> Self {
        LogCommand(Arc::new(Logged {
            command,
            encoded: OnceLock::from(encoded),
        }))
    }

    pub fn command(&self) -> &Command {
        &self.0.command
    }

    /// The command back, without a copy unless another holder still has it.
    pub fn into_command(self) -> Command {
        match Arc::try_unwrap(self.0) {
            Ok(logged) => logged.command,
            Err(shared) => shared.command.clone(),
        }
    }

    fn encoded(&self) -> &Bytes {
        self.0
            .encoded
            .get_or_init(|| Bytes::from(self.0.command.encode_to_vec()))
    }
}

impl From<Request> for LogCommand {
    fn from(request: Request) -> Self {
        LogCommand::new(Command::from(request))
    }
}

impl Payload for LogCommand {
    type Response = Applied;

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.encoded());
    }

    fn decode(bytes: Bytes) -> Result<Self, String> {
        let command = Command::decode_counted(bytes.clone()).map_err(|e| e.to_string())?;
        Ok(LogCommand(Arc::new(Logged {
            command,
            encoded: OnceLock::from(bytes),
        })))
    }
}

// The network's form (postcard through serde) is the same bytes as the WAL's.
impl Serialize for LogCommand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.encoded())
    }
}

impl<'de> Deserialize<'de> for LogCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Bytes::deserialize(deserializer)?;
        LogCommand::decode(bytes).map_err(serde::de::Error::custom)
    }
}

// openraft logs entries at debug level: the kind, not the contents.
impl fmt::Debug for LogCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command = self.command();
        match &command.request {
            Some(request) => write!(f, "LogCommand({})", request.kind()),
            None => write!(f, "LogCommand(batch of {})", command.batch.len()),
        }
    }
}

/// What applying one log entry answers its proposer: a result for each
/// command it holds, in order (none for blank and membership entries).
#[derive(Debug, Default)]
pub struct Applied(pub Vec<Result<Response, EtcdError>>);

impl Applied {
    fn to_outcomes(&self) -> Outcomes {
        Outcomes {
            outcomes: self.0.iter().map(Outcome::from_result_ref).collect(),
        }
    }
}

// openraft requires its responses to be serializable; oxetcd never sends one
// (a forwarded write's answer is an `Outcome`), but the form is the wire's.
impl Serialize for Applied {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_outcomes().encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Bytes::deserialize(deserializer)?;
        let outcomes = Outcomes::decode(bytes).map_err(serde::de::Error::custom)?;
        Ok(Applied(
            outcomes
                .outcomes
                .into_iter()
                .map(Outcome::into_result)
                .collect(),
        ))
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
    AlarmRequest => Alarm(AlarmResponse),
    AuthCommand => Auth(AuthApplied),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log format before typed commands: a batch held each write as an
    /// encoded `Command` in `repeated bytes`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct CommandBeforeTypedBatches {
        #[prost(oneof = "Request", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
        request: Option<Request>,
        #[prost(bytes = "bytes", repeated, tag = "16")]
        batch: Vec<Bytes>,
    }

    fn put(key: &'static str) -> Request {
        Request::Put(PutRequest {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease: 7,
            ..Default::default()
        })
    }

    #[test]
    fn a_batch_logged_before_typed_commands_decodes_to_the_same_writes() {
        let old = CommandBeforeTypedBatches {
            request: None,
            batch: ["a", "b"]
                .iter()
                .map(|k| Bytes::from(Command::from(put(k)).encode_to_vec()))
                .collect(),
        };
        let logged = LogCommand::decode(Bytes::from(old.encode_to_vec())).unwrap();
        let writes: Vec<_> = logged
            .command()
            .batch
            .iter()
            .map(|w| w.clone().into_request())
            .collect();
        assert_eq!(writes, vec![Some(put("a")), Some(put("b"))]);
        // And the new encoding is the old one, byte for byte.
        assert_eq!(
            Command::batch(vec![
                put("a").into_key_write().unwrap(),
                put("b").into_key_write().unwrap()
            ])
            .encode_to_vec(),
            old.encode_to_vec()
        );
    }

    #[test]
    fn a_lone_request_logged_before_typed_commands_decodes_as_itself() {
        let old = CommandBeforeTypedBatches {
            request: Some(put("a")),
            batch: Vec::new(),
        };
        let logged = LogCommand::decode(Bytes::from(old.encode_to_vec())).unwrap();
        assert_eq!(logged.command().request, Some(put("a")));
    }

    #[test]
    fn a_command_is_encoded_once_and_keeps_the_bytes_it_was_decoded_from() {
        let logged = LogCommand::new(Command::from(put("a")));
        let (mut wal, mut again) = (Vec::new(), Vec::new());
        logged.encode(&mut wal);
        logged.clone().encode(&mut again);
        assert_eq!(wal, again);
        let first = logged.encoded().as_ptr();
        assert_eq!(
            logged.clone().encoded().as_ptr(),
            first,
            "one encoding, shared"
        );
        let decoded = LogCommand::decode(Bytes::from(wal.clone())).unwrap();
        assert_eq!(decoded.command(), logged.command());
        let mut re = Vec::new();
        decoded.encode(&mut re);
        assert_eq!(re, wal);
    }

    #[test]
    fn applied_results_survive_serde() {
        let applied = Applied(vec![
            Ok(Response::Put(PutResponse::default())),
            Err(EtcdError::LeaseNotFound),
        ]);
        let json = serde_json::to_vec(&applied).unwrap();
        let back: Applied = serde_json::from_slice(&json).unwrap();
        assert_eq!(format!("{back:?}"), format!("{applied:?}"));
    }
}
