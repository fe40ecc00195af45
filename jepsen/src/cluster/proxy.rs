//! A fault-injecting TCP proxy in front of each member's peer port, for the
//! `slow` and `lossy` nemeses (the kernel here has no netem qdisc, and a
//! proxy works without root).
//!
//! Member i listens on its own address but advertises the proxy's, so every
//! peer connection *to* member i, whichever member dials, goes through proxy
//! i; a fault on proxy i acts on all of member i's incoming peer links, both
//! directions. Bytes keep their order and the stream stays a stream:
//!
//! - **slow**: every chunk is delivered `delay` + up to `jitter` after it
//!   was read, pipelined (latency grows, throughput does not collapse);
//! - **lossy**: what packet loss looks like to a TCP application: with
//!   probability `loss` a chunk waits a retransmission timeout (200 ms to
//!   1 s, and everything behind it waits too), and with probability
//!   `loss / 10` the connection is reset.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::error::JepsenError;

/// What a proxy does to the bytes passing through it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LinkFault {
    #[default]
    None,
    Slow {
        delay: Duration,
        jitter: Duration,
    },
    Lossy {
        /// Probability, per chunk, of a retransmission stall.
        loss: f64,
    },
}

/// The smallest and largest stall of a lost chunk (Linux's minimum RTO
/// is 200 ms).
const STALL: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(1));
/// How long the proxy waits for the member to accept its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Chunks in flight per direction: a bound, so a stalled link pushes back
/// on the sender as TCP would.
const IN_FLIGHT: usize = 256;

/// One listening proxy; stops (and closes every connection) on drop.
pub struct Proxy {
    fault: Arc<Mutex<LinkFault>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `listen` and forwards each connection to `upstream`.
    /// `seed` seeds the per-connection RNGs.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> Result<Proxy, JepsenError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| JepsenError::Net(format!("proxy on {listen}: {e}")))?;
        let fault = Arc::new(Mutex::new(LinkFault::None));
        let accept = tokio::spawn(accept_loop(listener, upstream, fault.clone(), seed));
        Ok(Proxy { fault, accept })
    }

    pub fn set(&self, fault: LinkFault) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it
        // aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<Mutex<LinkFault>>,
    seed: u64,
) {
    let mut connections = JoinSet::new();
    let mut accepted: u64 = 0;
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((inbound, _)) = incoming else { continue };
                accepted += 1;
                let fault = fault.clone();
                let rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(accepted));
                connections.spawn(connection(inbound, upstream, fault, rng));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one connection until either side closes it or a lossy link
/// resets it (both sockets are dropped then).
async fn connection(
    inbound: TcpStream,
    upstream: SocketAddr,
    fault: Arc<Mutex<LinkFault>>,
    rng: ChaCha8Rng,
) {
    let Ok(Ok(outbound)) =
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let mut back = rng.clone();
    back.set_stream(1);
    let _ = tokio::try_join!(
        pipe(in_read, out_write, fault.clone(), rng),
        pipe(out_read, in_write, fault, back),
    );
}

/// The link was reset by a lossy fault, or a socket failed.
struct Broken;

/// One direction: a reader stamping each chunk with its delivery time, a
/// writer delivering in order, no earlier than the stamp.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    fault: Arc<Mutex<LinkFault>>,
    mut rng: ChaCha8Rng,
) -> Result<(), Broken> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT);
    let reader = async move {
        let mut last = Instant::now();
        loop {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let n = from.read_buf(&mut buf).await.map_err(|_| Broken)?;
            if n == 0 {
                return Ok(());
            }
            let current = fault.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let extra = match current {
                LinkFault::None => Duration::ZERO,
                LinkFault::Slow { delay, jitter } => {
                    delay + jitter.mul_f64(rng.random_range(0.0..=1.0))
                }
                LinkFault::Lossy { loss } => {
                    if rng.random_bool((loss / 10.0).clamp(0.0, 1.0)) {
                        return Err(Broken);
                    }
                    if rng.random_bool(loss.clamp(0.0, 1.0)) {
                        rng.random_range(STALL.0..=STALL.1)
                    } else {
                        Duration::ZERO
                    }
                }
            };
            // Never before the chunk ahead of it: a stream keeps its order.
            last = last.max(Instant::now() + extra);
            if tx.send((last, buf.freeze())).await.is_err() {
                return Err(Broken);
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            to.write_all(&chunk).await.map_err(|_| Broken)?;
        }
        // The sender closed its side: pass the half-close on.
        let _ = to.shutdown().await;
        Ok::<(), Broken>(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// An echo server on a free port.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn proxy_to(upstream: SocketAddr) -> (Proxy, SocketAddr) {
        // Bind to port 0 through a listener first to learn a free port.
        let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        (Proxy::start(addr, upstream, 1).await.unwrap(), addr)
    }

    /// Sends `data` through and reads the echo back; returns the round trip.
    async fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<(Vec<u8>, Duration)> {
        let mut s = TcpStream::connect(addr).await?;
        let began = std::time::Instant::now();
        s.write_all(data).await?;
        let mut back = vec![0; data.len()];
        s.read_exact(&mut back).await?;
        Ok((back, began.elapsed()))
    }

    #[tokio::test]
    async fn forwards_bytes_in_order() {
        let (_proxy, addr) = proxy_to(echo().await).await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (back, _) = round_trip(addr, &data).await.unwrap();
        assert!(back == data);
    }

    #[tokio::test]
    async fn slow_links_delay_both_ways_and_heal() {
        let (proxy, addr) = proxy_to(echo().await).await;
        proxy.set(LinkFault::Slow {
            delay: Duration::from_millis(150),
            jitter: Duration::ZERO,
        });
        let (back, took) = round_trip(addr, b"ping").await.unwrap();
        assert_eq!(back, b"ping");
        // Once to the member, once back.
        assert!(took >= Duration::from_millis(300), "{took:?}");
        proxy.set(LinkFault::None);
        let (_, took) = round_trip(addr, b"ping").await.unwrap();
        assert!(took < Duration::from_millis(150), "{took:?}");
    }

    #[tokio::test]
    async fn lossy_links_stall_or_reset_but_never_corrupt() {
        let (proxy, addr) = proxy_to(echo().await).await;
        proxy.set(LinkFault::Lossy { loss: 1.0 });
        // Every chunk stalls, one in ten resets: over a few tries both
        // happen, and what arrives is what was sent.
        let (mut stalled, mut reset) = (false, false);
        for _ in 0..40 {
            match round_trip(addr, b"data").await {
                Ok((back, took)) => {
                    assert_eq!(back, b"data");
                    stalled |= took >= STALL.0;
                }
                Err(_) => reset = true,
            }
            if stalled && reset {
                break;
            }
        }
        assert!(stalled && reset, "stalled {stalled}, reset {reset}");
    }
}
