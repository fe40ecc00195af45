//! oxetcd: an etcd v3 API compatible key-value store.
//!
//! `oxetcd` takes etcd's flags; see README.md and `oxetcd --help`. This crate
//! is the front end: everything a client or an operator meets at the edge.
//! The member itself (Raft, apply, leases, MVCC, watch) is the library
//! `oxetcd_server`, which this binary starts; docs/architecture.md walks a
//! request through both.
//!
//! | module | what it holds |
//! |---|---|
//! | `config` | etcd's flags and `ETCD_*` variables, parsed and checked |
//! | `logging` | etcd's log formats (zap JSON, capnslog text) and outputs |
//! | `run` | start-up: the member, peer and client listeners, services, the stop signal |
//! | `tls` | rustls configs: server side, peer client, auto-TLS, certificate names |
//! | `listener` | binding `http://`, `https://` and `unix://` URLs; HTTP and HTTPS on one port |
//! | `authority` | the HTTP/2 `:authority` fix for etcdctl 3.4's requests |
//! | `service` | the gRPC services (KV, Watch, Lease, Cluster, Maintenance, Lock, Election) and `/health`, `/version` |
//! | `gateway` | etcd's JSON gateway (`/v3/...`) over the same services |

mod authority;
mod config;
mod gateway;
mod listener;
mod logging;
mod run;
mod service;
mod tls;

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match config::parse(std::env::args_os()) {
        Ok(config::Invocation::Run(config)) => config,
        Ok(config::Invocation::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(config::Invocation::Version) => {
            print!("{}", config::version_text());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("oxetcd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(config.logger, &config.log_outputs, &config.log_level) {
        eprintln!("oxetcd: {e}");
        return ExitCode::from(2);
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxetcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("oxetcd: {e}");
            ExitCode::FAILURE
        }
    }
}
