//! Why a run could not be done (exit status 2). Anomalies are not errors:
//! they are verdicts.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JepsenError {
    #[error("invalid option: {0}")]
    Usage(String),
    #[error("network namespaces: {0}")]
    Net(String),
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cluster did not come up: {0}")]
    NotReady(String),
    #[error("signalling member {member}: {source}")]
    Signal {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("the --db hook {} {action} (member {member}): {reason}; its output ends:\n{output}", hook.display())]
    Hook {
        hook: PathBuf,
        action: &'static str,
        member: String,
        reason: String,
        output: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Plan {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("the power-loss file system: {0}")]
    PowerFs(String),
    #[error("drawing the plots: {0}")]
    Plot(String),
}

impl JepsenError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> JepsenError {
        let path = path.into();
        move |source| JepsenError::Io { path, source }
    }
}
