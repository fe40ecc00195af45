//! Benchmarks of oxetcd, two kinds:
//!
//! - **criterion micro-benchmarks** of the hot paths, in `benches/` (`mvcc`:
//!   put, range, compaction; `wal`: the Raft log; `watch_fanout`: the watch
//!   hub; `fsync`: this machine's fsync latency, the floor under every durable
//!   write). Their fixtures (stores preloaded with Kubernetes-like keys) are in
//!   `benches/common/`: `cargo bench -p oxetcd-benches --bench mvcc`.
//! - **`oxetcd-bench`**, a load generator speaking etcd's v3 gRPC API to any
//!   endpoints ([`loadgen`]), so the same client measures oxetcd and etcd:
//!   `cargo run --release -p oxetcd-benches -- put --clients 100 --conns 10 --total 50000`.
//!   `benches/compare` runs it against Debian's etcd and oxetcd side by side.
//!
//! Results, and the commands that produced them, are in `docs/performance.md`.

pub mod loadgen;
