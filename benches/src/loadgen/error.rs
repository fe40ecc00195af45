//! The two kinds of failure: [`BenchError`] stops the tool before or around
//! a run (bad flags, no server at start, a preload that failed, an output file
//! that cannot be written: exit status 2); [`OpError`] is one failed request
//! during the run, counted in the summary by kind, code and message, never
//! fatal.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tonic::Status;

/// Why the tool could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid option: {0}")]
    Usage(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("TLS: {0}")]
    Tls(#[from] oxetcd_tls::Error),
    #[error("reading {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `--user`: the login before the run failed (a wrong password, a server
    /// without auth enabled); nothing was measured.
    #[error("cannot authenticate as {user:?} on {endpoint}: {error}")]
    Authenticate {
        user: String,
        endpoint: String,
        error: OpError,
    },
    #[error("--target-leader: {0}")]
    NoLeader(String),
    #[error("--target-follower: {0}")]
    NoFollower(String),
    /// Setting up the run (preloading keys, creating the initial objects,
    /// opening watches) failed; nothing was measured.
    #[error("setup ({what}): {error}")]
    Setup { what: String, error: OpError },
    #[error("fsync probe in {dir}: {source}")]
    Fsync {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("latency histogram: {0}")]
    Histogram(String),
    #[error("report: {0}")]
    Report(String),
    #[error("plot: {0}")]
    Plot(String),
    /// A watcher process of `watch --watch-processes` (or, in one, its parent).
    #[error("watcher process: {0}")]
    WatchProcess(String),
}

/// One failed request (or stream, or missing watch event) during a run.
#[derive(Debug, Clone)]
pub enum OpError {
    /// The server (or tonic's transport) answered with a gRPC status.
    Grpc(Status),
    /// No answer within `--request-timeout`.
    Timeout(Duration),
    /// A stream (watch, lease keepalive) ended without a status.
    StreamEnded(&'static str),
    /// An answer that does not follow etcd's API, e.g. a txn whose failure
    /// branch has no range response.
    Unexpected(String),
    /// An optimistic update lost the compare this many times in a row.
    RetriesExhausted(u32),
    /// Watch events that never arrived.
    Missing(&'static str),
    /// An HTTP answer other than 2xx (k8s): its status code and the
    /// message of the Kubernetes `Status` it carried.
    Http { status: u16, message: String },
    /// The HTTP request could not be made or its answer not read (k8s).
    Transport(String),
}

impl OpError {
    /// The code errors are grouped by: the gRPC code's name (`Unavailable`,
    /// `Unimplemented`, ...) or the tool's own kind.
    pub fn code(&self) -> String {
        match self {
            OpError::Grpc(status) => format!("{:?}", status.code()),
            OpError::Timeout(_) => "ClientTimeout".to_owned(),
            OpError::StreamEnded(_) => "StreamEnded".to_owned(),
            OpError::Unexpected(_) => "Unexpected".to_owned(),
            OpError::RetriesExhausted(_) => "RetriesExhausted".to_owned(),
            OpError::Missing(_) => "Missing".to_owned(),
            OpError::Http { status, .. } => format!("HTTP {status}"),
            OpError::Transport(_) => "Transport".to_owned(),
        }
    }

    /// The message errors are grouped by, cut to [`MESSAGE_CHARS`].
    pub fn message(&self) -> String {
        let text = match self {
            OpError::Grpc(status) => match std::error::Error::source(status) {
                // tonic's transport errors say only "transport error": the
                // cause is in the source chain.
                Some(source) => format!(
                    "{}: {}",
                    status.message(),
                    super::connect::error_chain(source)
                ),
                None => status.message().to_owned(),
            },
            OpError::Timeout(after) => format!("no answer within {after:?}"),
            OpError::StreamEnded(what) => format!("{what} stream ended"),
            OpError::Unexpected(what) => what.clone(),
            OpError::RetriesExhausted(n) => format!("compare failed {n} times in a row"),
            OpError::Missing(what) => format!("{what} never arrived"),
            OpError::Http { message, .. } => message.clone(),
            OpError::Transport(what) => what.clone(),
        };
        text.chars().take(MESSAGE_CHARS).collect()
    }
}

/// Longest error message kept: messages that differ only past it (a request
/// id, a revision) are counted together.
pub const MESSAGE_CHARS: usize = 160;

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for OpError {}

impl From<Status> for OpError {
    fn from(status: Status) -> Self {
        OpError::Grpc(status)
    }
}
