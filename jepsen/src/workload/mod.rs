//! What the clients do, and which checkers judge it.
//!
//! | workload | operations | checked by |
//! |---|---|---|
//! | `register` | read, write, compare-and-set on a sliding window of keys | [`crate::check::register`] (linearizability per key) |
//! | `set` | unique adds, one final read | [`crate::check::set`] |
//! | `watch` | puts, one watcher per member resuming after faults, a fence at the end | [`crate::check::watch`] |
//! | `append` | multi-key list-append transactions | [`crate::check::append`] (strict serializability, Elle-style) |
//! | `lease` | grants, leased puts, keep-alive streams, revokes, reads of the prefix, a final sweep | [`crate::check::lease`] |
//! | `kubernetes` | kube-apiserver's guarded create / update / delete, get, paginated lists, one watch per client | [`crate::check::kubernetes`], [`crate::check::watch`] |

pub mod append;
pub mod kubernetes;
pub mod lease;
pub mod register;
pub mod set;
pub mod watch;

use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

use crate::check::{self, Verdict};
use crate::client::Ctx;
use crate::error::JepsenError;
use crate::history::Op;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Register,
    Set,
    Watch,
    Append,
    Kubernetes,
    Lease,
}

impl FromStr for Workload {
    type Err = JepsenError;
    fn from_str(s: &str) -> Result<Workload, JepsenError> {
        match s {
            "register" => Ok(Workload::Register),
            "set" => Ok(Workload::Set),
            "watch" => Ok(Workload::Watch),
            "append" => Ok(Workload::Append),
            "kubernetes" => Ok(Workload::Kubernetes),
            "lease" => Ok(Workload::Lease),
            other => Err(JepsenError::Usage(format!(
                "unknown workload {other:?} (register, set, watch, append, kubernetes, lease)"
            ))),
        }
    }
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Watch => "watch",
            Workload::Append => "append",
            Workload::Kubernetes => "kubernetes",
            Workload::Lease => "lease",
        }
    }

    /// The prefix every key the workload touches is under: what its user
    /// is granted with `--auth`.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Workload::Register => register::PREFIX,
            Workload::Set => set::PREFIX,
            Workload::Watch => watch::PREFIX,
            Workload::Append => append::PREFIX,
            Workload::Kubernetes => kubernetes::PREFIX,
            Workload::Lease => lease::PREFIX,
        }
    }
}

/// A workload under way: its client tasks and what its end needs.
pub struct Running {
    workload: Workload,
    clients: Vec<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
    fence: Arc<watch::Fence>,
    /// What the watchers watch and the revision they start from, for the
    /// record read at the end.
    watched: Option<(watch::Spec, i64)>,
    keepers: Arc<lease::Keepers>,
}

/// Starts `ctx.concurrency` clients, client `i` on member `i % members`,
/// each with its own RNG drawn from `seed`.
pub async fn start(workload: Workload, ctx: &Arc<Ctx>, seed: u64) -> Result<Running, JepsenError> {
    let counter = Arc::new(AtomicU64::new(0));
    let values = Arc::new(AtomicU64::new(0));
    let fence = Arc::new(watch::Fence::default());
    let keepers = Arc::new(lease::Keepers::default());
    let mut clients = Vec::new();
    let mut watchers = Vec::new();
    // The watch workload has one watcher per member; kubernetes one per
    // client, as every kube-apiserver watches.
    let watching = match workload {
        Workload::Watch => Some((watch::SPEC, ctx.members() as u32)),
        Workload::Kubernetes => Some((kubernetes::SPEC, ctx.concurrency)),
        _ => None,
    };
    let mut watched = None;
    if let Some((spec, count)) = watching {
        let from = watch::start_revision(ctx, spec.prefix)
            .await
            .map_err(|e| JepsenError::NotReady(format!("reading the start revision: {e}")))?;
        watched = Some((spec, from));
        for w in 0..count {
            let process = 1_000_000 + w;
            watchers.push(tokio::spawn(watch::watcher(
                ctx.clone(),
                fence.clone(),
                spec,
                w,
                process,
                from,
            )));
        }
    }
    for i in 0..ctx.concurrency {
        let member = i as usize % ctx.members();
        let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(1 + i as u64));
        let (ctx, counter, values) = (ctx.clone(), counter.clone(), values.clone());
        clients.push(match workload {
            Workload::Register => tokio::spawn(register::client(ctx, counter, i, member, rng)),
            Workload::Set => tokio::spawn(set::client(ctx, counter, i, member)),
            Workload::Watch => tokio::spawn(watch::writer(ctx, counter, i, member, rng)),
            Workload::Append => tokio::spawn(append::client(ctx, counter, values, i, member, rng)),
            Workload::Kubernetes => {
                tokio::spawn(kubernetes::client(ctx, counter, values, i, member, rng))
            }
            Workload::Lease => {
                let keepers = keepers.clone();
                tokio::spawn(lease::client(ctx, counter, keepers, i, member, rng))
            }
        });
    }
    Ok(Running {
        workload,
        clients,
        watchers,
        fence,
        watched,
        keepers,
    })
}

impl Running {
    /// Waits for the clients to stop (the deadline passed), then runs the
    /// workload's final operations on the healed cluster.
    pub async fn finish(self, ctx: &Ctx) {
        for client in self.clients {
            let _ = client.await;
        }
        let process = 2_000_000;
        match self.workload {
            Workload::Set => set::final_read(ctx, process).await,
            Workload::Watch | Workload::Kubernetes => {
                let fence_key = match self.workload {
                    Workload::Watch => format!("{}fence", watch::PREFIX),
                    _ => kubernetes::FENCE.to_owned(),
                };
                watch::write_fence(ctx, &self.fence, &fence_key, process).await;
                for watcher in self.watchers {
                    let _ = watcher.await;
                }
                if let Some((spec, from)) = self.watched {
                    watch::read_record(ctx, &self.fence, spec, from, process + 1).await;
                }
            }
            Workload::Lease => {
                self.keepers.join().await;
                lease::sweep(ctx, process).await;
            }
            Workload::Register | Workload::Append => {}
        }
    }
}

/// The checkers of a workload on its history, each with what it cost.
pub fn check(workload: Workload, ops: &[Op]) -> Vec<Verdict> {
    use check::cost::measured;
    match workload {
        Workload::Register => vec![measured(|| {
            check::register::check(ops, check::register::DEFAULT_BUDGET)
        })],
        Workload::Set => vec![measured(|| check::set::check(ops))],
        Workload::Watch => vec![measured(|| check::watch::check(ops))],
        Workload::Append => vec![measured(|| check::append::check(ops))],
        Workload::Kubernetes => vec![
            measured(|| check::kubernetes::check(ops, check::kubernetes::DEFAULT_BUDGET)),
            measured(|| check::kubernetes::check_lists(ops)),
            measured(|| check::watch::check(ops)),
        ],
        Workload::Lease => vec![measured(|| check::lease::check(ops))],
    }
}
