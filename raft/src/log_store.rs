//! openraft's log storage on the [`Wal`]: [`RaftLogStorage`] for the Raft core,
//! [`RaftLogReader`] for it and for the replication tasks.
//!
//! Every method maps onto one WAL call; the WAL does the work (durability,
//! group commit, reads from cache or disk), except purges, which go through a
//! [`PurgeGate`] (never past what the state machine holds durably). Errors
//! become openraft [`StorageError`]s naming what was being read or written.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError, StorageIOError,
};

use crate::purge_gate::PurgeGate;
use crate::types::{Entry, LogId, NodeId, Payload, Types, Vote};
use crate::wal::{Wal, WalError};

/// openraft's Raft log, stored in a [`Wal`].
#[derive(Debug, Clone)]
pub struct LogStore<P: Payload> {
    wal: Wal<P>,
    purges: Arc<PurgeGate<P>>,
}

/// Reads the log for replication; a clone of the same [`Wal`].
#[derive(Debug, Clone)]
pub struct LogReader<P: Payload> {
    wal: Wal<P>,
}

impl<P: Payload> LogStore<P> {
    /// A log store on an open WAL whose purges run at once: for a state
    /// machine that is durable at every apply.
    pub fn new(wal: Wal<P>) -> LogStore<P> {
        Self::with_purge_gate(PurgeGate::unchecked(wal))
    }

    /// A log store on the gate's WAL that purges only as far as the gate lets
    /// it (see [`PurgeGate`]).
    pub fn with_purge_gate(purges: Arc<PurgeGate<P>>) -> LogStore<P> {
        LogStore {
            wal: purges.wal().clone(),
            purges,
        }
    }

    /// The WAL underneath (stats, recovery report).
    pub fn wal(&self) -> &Wal<P> {
        &self.wal
    }
}

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: WalError) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn read_err(e: WalError) -> StorageError<NodeId> {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

impl<P: Payload> RaftLogReader<Types<P>> for LogReader<P> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<P>>, StorageError<NodeId>> {
        self.wal.entries(range).map_err(read_err)
    }
}

impl<P: Payload> RaftLogReader<Types<P>> for LogStore<P> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<P>>, StorageError<NodeId>> {
        self.wal.entries(range).map_err(read_err)
    }
}

impl<P: Payload> RaftLogStorage<Types<P>> for LogStore<P> {
    type LogReader = LogReader<P>;

    async fn get_log_state(&mut self) -> Result<LogState<Types<P>>, StorageError<NodeId>> {
        let (last_purged_log_id, last_log_id) = self.wal.log_state();
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            wal: self.wal.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.wal
            .save_vote(vote)
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        Ok(self.wal.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        self.wal
            .save_committed(committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        // etcd's proposals_committed_total is the committed index, a gauge.
        if let Some(id) = committed {
            oxetcd_metrics::server()
                .proposals_committed_total
                .set(i64::try_from(id.index).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.wal.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types<P>>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<P>> + Send,
        I::IntoIter: Send,
    {
        self.wal
            .append_then(entries, move |result| {
                callback.log_io_completed(result.map_err(io::Error::other));
            })
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.wal
            .truncate(log_id)
            .await
            .map_err(|e| io_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.purges
            .purge(log_id)
            .await
            .map_err(|e| io_err(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))
    }
}
