//! `set`: clients add unique elements (a put of a key of its own under
//! `jepsen/s/`); when the faults are over, one read of the whole prefix
//! must hold every acknowledged element.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::client::{self, Ctx};
use crate::history::{Call, Outcome};

pub const PREFIX: &str = "jepsen/s/";

fn key(element: i64) -> String {
    format!("{PREFIX}{element:010}")
}

pub async fn client(ctx: Arc<Ctx>, counter: Arc<AtomicU64>, mut process: u32, member: usize) {
    let mut kv = ctx.kv(member);
    while ctx.running() {
        let element = counter.fetch_add(1, Ordering::Relaxed) as i64;
        let call = Call::Add { element };
        let kv = &mut kv;
        let outcome = ctx
            .invoke(process, call.clone(), true, async move {
                client::put(kv, &key(element), element).await?;
                Ok(call)
            })
            .await;
        if outcome == Outcome::Info {
            process += ctx.concurrency;
        }
        super::register::pace(&ctx, outcome).await;
    }
}

/// The final read, tried on each member in turn until one answers.
pub async fn final_read(ctx: &Ctx, process: u32) {
    for attempt in 0..3 * ctx.members() {
        let mut kv = ctx.kv(attempt);
        let call = Call::ReadSet { elements: None };
        let outcome = ctx
            .invoke(process, call, false, async move {
                let (_, kvs) = client::list(&mut kv, PREFIX, 10_000, 0).await?;
                let elements = kvs.iter().filter_map(client::decode).collect();
                Ok(Call::ReadSet {
                    elements: Some(elements),
                })
            })
            .await;
        if outcome == Outcome::Ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
