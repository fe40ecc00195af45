//! The history of a run: every client operation with when it was invoked and
//! when it completed (nanoseconds since the run started), how it ended, and
//! what it asked and saw; plus the fault windows of the nemesis.
//!
//! **Outcomes.** `ok`: the server answered and the answer is recorded.
//! `fail`: the operation certainly did not take effect (a read that errored,
//! a compare that did not hold is `ok` with `swapped: false`, not `fail`).
//! `info`: indeterminate, the client gave up (timeout, broken connection)
//! and the operation may or may not have taken effect, at any time after its
//! invocation. Checkers must treat `info` writes as "maybe, at any time
//! later", never as failed.
//!
//! A history is stored as JSON lines, one [`Op`] per line:
//!
//! ```text
//! {"process":3,"invoke":1200,"complete":3400,"outcome":"ok","call":{"f":"write","key":"r0","value":17}}
//! {"process":1,"invoke":1300,"complete":2900,"outcome":"ok","call":{"f":"read","key":"r0","value":null}}
//! ```

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// The logical client that issued it; a client has one operation in
    /// flight at a time.
    pub process: u32,
    /// When the client sent it, ns since the run started.
    pub invoke: u64,
    /// When the client got the answer or gave up, ns since the run started.
    pub complete: u64,
    pub outcome: Outcome,
    pub call: Call,
    /// The error of a `fail` or `info` operation, for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an operation did, with what it observed (filled in when `ok`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Call {
    /// Register: read a key; `value` is `None` when the key is absent.
    Read { key: String, value: Option<i64> },
    /// Register: put a value.
    Write { key: String, value: i64 },
    /// Register: compare-and-set; `None` on either side means "absent"
    /// (create-if-absent, delete-if-equal). `swapped` is the Txn's
    /// `succeeded`, unknown for an `info` operation.
    Cas {
        key: String,
        from: Option<i64>,
        to: Option<i64>,
        swapped: Option<bool>,
    },
    /// Set: add one element (a key of its own under the set's prefix).
    Add { element: i64 },
    /// Set: the final read of every element.
    ReadSet { elements: Option<Vec<i64>> },
    /// Append: one transaction of micro-operations.
    Txn { mops: Vec<Mop> },
    /// Watch: a put whose revision the watchers must all report; `revision`
    /// is the response header's revision (the put's mod_revision).
    Put {
        key: String,
        value: i64,
        revision: Option<i64>,
    },
    /// Watch: everything one watcher saw, recorded when it stops. It asked
    /// for events from `from` on; `until` is the last revision it is known
    /// to have caught up to (the fence written at the end), if it did.
    WatchLog {
        watcher: u32,
        from: i64,
        until: Option<i64>,
        events: Vec<WatchEvent>,
        /// The revisions it resumed from after a broken stream.
        #[serde(default)]
        resumes: Vec<i64>,
    },
    /// Watch: the record of the watched range, read once at the end (after
    /// the watchers stopped) by one fresh watch stream on one member, from
    /// the watchers' start revision to the fence: every event of the range
    /// in `[from, until]`. `compacted` is the compact revision the server
    /// answered when the range was compacted past the watchers' start; the
    /// record then starts after it (`from` = compact revision + 1), as
    /// the changes at or before it can no longer be read whole. `until` is
    /// `None` when no member gave the record up to the fence.
    WatchRecord {
        from: i64,
        until: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compacted: Option<i64>,
        events: Vec<WatchEvent>,
    },
    /// Kubernetes: a write guarded by the object's mod_revision, as
    /// kube-apiserver sends them. Create: `If mod_revision(key) == 0 Then
    /// Put`; update: `If mod_revision == rv Then Put Else Range`; delete:
    /// `If mod_revision == rv Then DeleteRange Else Range`.
    Guarded {
        key: String,
        /// The version the client holds (`None`: a create, mod_revision 0).
        expect: Option<Version>,
        /// `Some(value)`: put it; `None`: delete.
        write: Option<i64>,
        /// The Txn's `succeeded`, unknown unless `ok`.
        succeeded: Option<bool>,
        /// When it succeeded: the response header's revision, the revision
        /// of the change.
        revision: Option<i64>,
        /// When it failed: what the Else range returned (a create has no
        /// Else, so this stays `None`).
        current: Option<Seen>,
    },
    /// Kubernetes: a Get (Range of one key) of one object.
    Get { key: String, seen: Option<Seen> },
    /// Kubernetes: a list of a prefix in pages, every page at the first
    /// page's revision (`revision`, the list's resourceVersion).
    List {
        prefix: String,
        /// Keys per page.
        limit: i64,
        revision: Option<i64>,
        objects: Option<Vec<Listed>>,
    },
    /// Lease: grant a lease with a client-chosen id. `granted` is the TTL
    /// the server answered with (it may raise `ttl` to its minimum).
    Grant {
        lease: i64,
        ttl: i64,
        granted: Option<i64>,
    },
    /// Lease: put `key` attached to `lease`.
    PutLeased { key: String, lease: i64 },
    /// Lease: one keep-alive request and its answer: the lease's TTL from
    /// now, `Some(0)` when the server no longer has the lease.
    KeepAlive { lease: i64, ttl: Option<i64> },
    /// Lease: revoke a lease (its keys go with it).
    Revoke { lease: i64 },
    /// Lease: a linearizable read of every key under a prefix. `sweep`:
    /// one of the reads at the end, after the faults and the keep-alives
    /// stopped, that wait for every lease to expire.
    ReadKeys {
        prefix: String,
        keys: Option<Vec<String>>,
        #[serde(default)]
        sweep: bool,
    },
}

/// One version of a Kubernetes object: its value (unique in the run) and
/// the revision that wrote it (its resourceVersion).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    pub value: i64,
    pub revision: i64,
}

/// What a read of one object returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Seen {
    Absent,
    Present { value: i64, revision: i64 },
}

impl Seen {
    pub fn value(self) -> Option<i64> {
        match self {
            Seen::Absent => None,
            Seen::Present { value, .. } => Some(value),
        }
    }
    pub fn version(self) -> Option<Version> {
        match self {
            Seen::Absent => None,
            Seen::Present { value, revision } => Some(Version { value, revision }),
        }
    }
}

/// One object of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub key: String,
    pub value: i64,
    pub revision: i64,
}

/// One micro-operation of an append transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Mop {
    Append {
        key: String,
        value: i64,
    },
    /// `value` is the list read, filled in when the transaction is `ok`.
    Read {
        key: String,
        value: Option<Vec<i64>>,
    },
}

/// One event a watcher received.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: i64,
    pub key: String,
    /// The value put, `None` for a delete.
    pub value: Option<i64>,
}

/// A time when the nemesis had a fault in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// e.g. `kill`, `pause`, `partition`.
    pub kind: String,
    /// Which members, or how the network was cut.
    pub target: String,
    pub start: u64,
    pub end: u64,
}

impl Op {
    /// The register key an operation is about, for per-key checking.
    pub fn register_key(&self) -> Option<&str> {
        match &self.call {
            Call::Read { key, .. } | Call::Write { key, .. } | Call::Cas { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The change an acknowledged write made, with the revision the server
    /// gave it: (revision, key, value put or `None` for a delete). Watchers
    /// must report exactly these.
    pub fn change(&self) -> Option<(i64, &str, Option<i64>)> {
        if self.outcome != Outcome::Ok {
            return None;
        }
        match &self.call {
            Call::Put {
                key,
                value,
                revision: Some(revision),
            } => Some((*revision, key, Some(*value))),
            Call::Guarded {
                key,
                write,
                succeeded: Some(true),
                revision: Some(revision),
                ..
            } => Some((*revision, key, *write)),
            _ => None,
        }
    }
}

/// Writes a history as JSON lines.
pub fn write_jsonl<W: Write>(mut out: W, ops: &[Op]) -> io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history written by [`write_jsonl`].
pub fn read_jsonl<R: BufRead>(input: R) -> io::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(serde_json::from_str(&line).map_err(io::Error::other)?);
    }
    Ok(ops)
}

#[cfg(test)]
pub(crate) mod build {
    //! Hand-made histories for the checkers' tests.
    use super::*;

    pub fn op(process: u32, invoke: u64, complete: u64, outcome: Outcome, call: Call) -> Op {
        Op {
            process,
            invoke,
            complete,
            outcome,
            call,
            error: None,
        }
    }
    pub fn read(p: u32, a: u64, b: u64, value: Option<i64>) -> Op {
        let key = "k".into();
        op(p, a, b, Outcome::Ok, Call::Read { key, value })
    }
    pub fn write(p: u32, a: u64, b: u64, value: i64) -> Op {
        op(
            p,
            a,
            b,
            Outcome::Ok,
            Call::Write {
                key: "k".into(),
                value,
            },
        )
    }
    pub fn write_info(p: u32, a: u64, b: u64, value: i64) -> Op {
        op(
            p,
            a,
            b,
            Outcome::Info,
            Call::Write {
                key: "k".into(),
                value,
            },
        )
    }
    pub fn cas(p: u32, a: u64, b: u64, from: i64, to: i64, swapped: bool) -> Op {
        let call = Call::Cas {
            key: "k".into(),
            from: Some(from),
            to: Some(to),
            swapped: Some(swapped),
        };
        op(p, a, b, Outcome::Ok, call)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn history_round_trips_through_json_lines() {
        let ops = vec![
            write(0, 1, 2, 5),
            read(1, 3, 4, None),
            op(
                2,
                5,
                9,
                Outcome::Info,
                Call::Txn {
                    mops: vec![
                        Mop::Append {
                            key: "x".into(),
                            value: 1,
                        },
                        Mop::Read {
                            key: "y".into(),
                            value: None,
                        },
                    ],
                },
            ),
        ];
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &ops).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(r#"{"process":0,"invoke":1,"complete":2,"outcome":"ok","call":{"f":"write","key":"k","value":5}}"#));
        assert_eq!(read_jsonl(buf.as_slice()).unwrap(), ops);
    }
}
