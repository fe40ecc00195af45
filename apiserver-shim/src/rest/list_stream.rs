//! Lists from the watch cache, sent as JSON while they are assembled: each
//! cached object's JSON (encoded once, shared with watch lines: see
//! `cache::event::Object::json`) is copied into chunks on a blocking thread.
//! A list of 20,000 pods (73 MB of JSON) copied every object twice and
//! encoded the whole answer on an async worker, 2 s during which that
//! worker served nothing else (on 2 cores, every mutation waited: p99 10 s
//! in `benches/k8s-compare`); now nothing is copied, the workers stay free,
//! and at most a few chunks of the answer are in memory at once.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::read::CachedItems;

/// Bytes encoded before a chunk is handed to the connection.
const CHUNK: usize = 256 << 10;
/// Chunks encoded ahead of what the client has taken.
const AHEAD: usize = 4;

/// The `{Kind}List` of `items` as JSON, in chunks, as they are encoded.
pub fn json(items: CachedItems) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = encode(&items, &tx) {
            // The client has the answer cut short, as a dropped connection.
            tracing::warn!("encoding a list of {}: {e}", items.kind.resource);
        }
    });
    rx
}

/// Why an answer stopped: the client went away, or an object did not encode.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the client went away")]
    Gone,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

fn encode(items: &CachedItems, tx: &mpsc::Sender<Bytes>) -> Result<(), Stopped> {
    let kind = items.kind;
    let mut buf = Vec::with_capacity(CHUNK + (CHUNK >> 2));
    buf.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut buf, &format!("{}List", kind.kind))?;
    buf.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut buf, &kind.api_version())?;
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, &items.metadata())?;
    buf.extend_from_slice(b",\"items\":[");
    for (i, object) in items.objects.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if let Some(json) = object.json(kind) {
            buf.extend_from_slice(&json);
        }
        if buf.len() >= CHUNK {
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + (CHUNK >> 2)));
            tx.blocking_send(Bytes::from(chunk))
                .map_err(|_| Stopped::Gone)?;
        }
    }
    buf.extend_from_slice(b"]}");
    tx.blocking_send(Bytes::from(buf))
        .map_err(|_| Stopped::Gone)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::{json, Value};

    use super::*;
    use crate::cache::event::Object;
    use crate::store::Kv;

    fn pod(i: usize) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": format!("p{i:04}"), "namespace": "ns", "resourceVersion": "7"},
            "spec": {"nodeName": "n", "note": "é\"\\".repeat(400)},
        })
    }

    #[tokio::test]
    async fn a_list_larger_than_a_chunk_arrives_whole_and_in_order() {
        let kind = crate::registry::find("", "v1", "pods").expect("pods");
        let objects: Vec<Arc<Object>> = (0..300)
            .map(|i| {
                Arc::new(Object::decode(&Kv {
                    key: Bytes::from(format!("/registry/pods/ns/p{i:04}")),
                    value: Bytes::from(pod(i).to_string()),
                    create_revision: 7,
                    mod_revision: 7,
                }))
            })
            .collect();
        let mut rx = json(CachedItems {
            kind,
            revision: 42,
            objects,
            continue_token: Some("next".into()),
            remaining: Some(5),
        });
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            chunks.push(chunk);
        }
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        let whole: Vec<u8> = chunks.concat();
        let list: Value = serde_json::from_slice(&whole).expect("one JSON document");
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(
            list["metadata"],
            json!({"resourceVersion": "42", "continue": "next", "remainingItemCount": 5})
        );
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), 300);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item, &pod(i), "item {i}");
        }
    }
}
