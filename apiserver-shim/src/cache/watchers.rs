//! The client watches a cache feeds, indexed by what they select, and the
//! fan-out of each event to them.
//!
//! - A watch is found, for pods, by the spec.nodeName its field selector
//!   names (kube-apiserver's indexer: each kubelet watches its own pods),
//!   else by a label its label selector requires with one value (`app=web`),
//!   else by the namespace it watches, else among the unindexed ones; an
//!   event reaches only the watches its object's (old and new) node, labels
//!   and namespace index, plus the unindexed.
//! - Watches with the same namespace and selectors form a class: an event
//!   is matched once per class, and its line encoded once per (class type,
//!   version, format), then the same `Bytes` go to every watch.
//! - Each watch has a bounded queue. The fan-out never waits: a watch whose
//!   queue is full is closed (its client is told 410 Expired and relists),
//!   so a stalled client costs the others nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::event::{encode, json_line, type_name, CachedEvent, Format, LineType, Object};
use crate::registry::Kind;
use crate::rest::object;
use crate::selector::Selector;
use crate::table;

/// Events queued for one client watch before it counts as stalled and is
/// closed.
pub const QUEUE: usize = 1024;

/// How a watch's lines are written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire {
    /// Shared by every watch of the same class, kind and format.
    Shared(Format),
    /// One-row Tables (kubectl get -w): a watch's first line carries the
    /// column definitions; each form is shared by the watches sent it.
    Table(table::Options),
}

/// What a client watch selects and how it is written.
pub struct Spec {
    pub kind: &'static Kind,
    /// Only objects of this namespace (a namespaced path).
    pub namespace: Option<String>,
    pub selector: Selector,
    /// The namespace and both selectors as given: watches with the same one
    /// select the same objects.
    pub class: String,
    pub wire: Wire,
}

impl Spec {
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| object::meta_str(obj, "namespace") == Some(ns))
            && self.selector.matches(obj)
    }

    /// The spec.nodeName a pod watch is indexed by.
    fn node(&self) -> Option<&str> {
        (self.kind.group.is_empty() && self.kind.resource == "pods")
            .then(|| self.selector.field_equals("spec.nodeName"))
            .flatten()
    }

    /// The line of type `t` carrying `obj`, encoded for this watch alone
    /// (initial events of a snapshot).
    pub fn encode_one(&self, t: LineType, obj: &Value, columns_sent: &AtomicBool) -> Option<Bytes> {
        match self.wire {
            Wire::Shared(format) => encode(type_name(t), obj, format),
            Wire::Table(opts) => {
                let first = !columns_sent.swap(true, Ordering::Relaxed);
                encode(
                    type_name(t),
                    &table::one(self.kind, obj, opts, first),
                    Format::Json,
                )
            }
        }
    }

    /// The ADDED line of a snapshot's object `o` (whose value is `v`): a
    /// JSON watch's carries the object's shared JSON.
    pub fn initial_line(&self, o: &Object, v: &Value, columns_sent: &AtomicBool) -> Option<Bytes> {
        if self.wire == Wire::Shared(Format::Json) {
            return o
                .json(self.kind)
                .map(|object| json_line(type_name(LineType::Added), &object));
        }
        let mut served = v.clone();
        crate::crd::serve(self.kind, &mut served);
        self.encode_one(LineType::Added, &served, columns_sent)
    }

    /// This watch's line for `ev`, if it selects it; shared lines come from
    /// (and go to) the event's own cache.
    pub fn line(&self, ev: &CachedEvent, t: LineType, columns_sent: &AtomicBool) -> Option<Bytes> {
        match self.wire {
            Wire::Shared(format) => ev.line(t, self.kind, format),
            Wire::Table(opts) => {
                let first = !columns_sent.swap(true, Ordering::Relaxed);
                ev.table_line(t, self.kind, opts, first)
            }
        }
    }
}

/// Why the cache closed a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Closed {
    /// Its queue filled: the client is not reading.
    TooSlow,
    /// The cache was rebuilt from a new list: the watch's position is gone.
    Rebuilt { revision: i64 },
}

/// A registered watch, as the fan-out sees it.
struct Entry {
    spec: Arc<Spec>,
    /// Events at or below this revision were sent another way (the
    /// snapshot or replay it started with, or the revision it asked for).
    after: i64,
    tx: mpsc::Sender<(i64, Bytes)>,
    closed: Arc<OnceLock<Closed>>,
    columns_sent: Arc<AtomicBool>,
}

/// The receiving side of a registered watch.
pub struct Registered {
    pub id: u64,
    pub rx: mpsc::Receiver<(i64, Bytes)>,
    /// Set when the cache closed the watch (the receiver then ends).
    pub closed: Arc<OnceLock<Closed>>,
    pub columns_sent: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct Watchers {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    unindexed: HashSet<u64>,
    by_namespace: HashMap<String, HashSet<u64>>,
    by_node: HashMap<String, HashSet<u64>>,
    /// label key -> value -> watches.
    by_label: HashMap<String, HashMap<String, HashSet<u64>>>,
}

/// What a watch is indexed by (the most selective its spec allows).
enum IndexKey<'a> {
    Node(&'a str),
    Label(&'a str, &'a str),
    Namespace(&'a str),
    None,
}

impl Spec {
    fn index_key(&self) -> IndexKey<'_> {
        if let Some(node) = self.node() {
            IndexKey::Node(node)
        } else if let Some((k, v)) = self.selector.label_equals() {
            IndexKey::Label(k, v)
        } else if let Some(ns) = self.namespace.as_deref() {
            IndexKey::Namespace(ns)
        } else {
            IndexKey::None
        }
    }
}

/// Removes `id` from `map[k]`, and the set once empty.
fn unindex(map: &mut HashMap<String, HashSet<u64>>, k: &str, id: u64) {
    if let Some(set) = map.get_mut(k) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

impl Watchers {
    pub fn add(&mut self, spec: Arc<Spec>, after: i64) -> Registered {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = mpsc::channel(QUEUE);
        let closed = Arc::new(OnceLock::new());
        let columns_sent = Arc::new(AtomicBool::new(false));
        match spec.index_key() {
            IndexKey::Node(node) => self.by_node.entry(node.into()).or_default().insert(id),
            IndexKey::Label(k, v) => self
                .by_label
                .entry(k.into())
                .or_default()
                .entry(v.into())
                .or_default()
                .insert(id),
            IndexKey::Namespace(ns) => self.by_namespace.entry(ns.into()).or_default().insert(id),
            IndexKey::None => self.unindexed.insert(id),
        };
        self.entries.insert(
            id,
            Entry {
                spec,
                after,
                tx,
                closed: closed.clone(),
                columns_sent: columns_sent.clone(),
            },
        );
        Registered {
            id,
            rx,
            closed,
            columns_sent,
        }
    }

    pub fn remove(&mut self, id: u64) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        match e.spec.index_key() {
            IndexKey::Node(node) => unindex(&mut self.by_node, node, id),
            IndexKey::Label(k, v) => {
                if let Some(values) = self.by_label.get_mut(k) {
                    unindex(values, v, id);
                    if values.is_empty() {
                        self.by_label.remove(k);
                    }
                }
            }
            IndexKey::Namespace(ns) => unindex(&mut self.by_namespace, ns, id),
            IndexKey::None => {
                self.unindexed.remove(&id);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Closes every watch for `why` (dropping their senders ends them).
    pub fn close_all(&mut self, why: Closed) {
        for e in self.entries.values() {
            let _ = e.closed.set(why.clone());
        }
        *self = Watchers {
            next_id: self.next_id,
            ..Watchers::default()
        };
    }

    /// The watches `obj` may concern, by the indexes.
    fn candidates(&self, objs: [Option<&Object>; 2], out: &mut Vec<u64>) {
        out.extend(self.unindexed.iter().copied());
        for o in objs.into_iter().flatten() {
            if let Some(set) = self.by_namespace.get(&o.namespace) {
                out.extend(set.iter().copied());
            }
            if let Some(set) = self.by_node.get(&o.node) {
                out.extend(set.iter().copied());
            }
            if !self.by_label.is_empty() {
                for (k, v) in &o.labels {
                    if let Some(set) = self.by_label.get(k).and_then(|values| values.get(v)) {
                        out.extend(set.iter().copied());
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// Sends `ev` to every watch that selects it, without waiting.
    pub fn dispatch(&mut self, ev: &CachedEvent) {
        let mut ids = Vec::new();
        self.candidates([ev.new.as_deref(), ev.old.as_deref()], &mut ids);
        // Per class: what it sees of the event; per (class type, kind,
        // format): the line.
        let mut seen: HashMap<&str, Option<LineType>> = HashMap::new();
        let mut lines: HashMap<(LineType, usize, Format), Option<Bytes>> = HashMap::new();
        let mut gone = Vec::new();
        for id in ids {
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            if ev.revision <= e.after {
                continue;
            }
            let spec = &e.spec;
            let t = *seen
                .entry(spec.class.as_str())
                .or_insert_with(|| ev.line_type(|v| spec.matches(v)));
            let Some(t) = t else { continue };
            let line = match spec.wire {
                Wire::Shared(format) => lines
                    .entry((t, spec.kind as *const Kind as usize, format))
                    .or_insert_with(|| ev.line(t, spec.kind, format))
                    .clone(),
                Wire::Table(_) => spec.line(ev, t, &e.columns_sent),
            };
            let Some(line) = line else { continue };
            match e.tx.try_send((ev.revision, line)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = e.closed.set(Closed::TooSlow);
                    gone.push(id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
            }
        }
        for id in gone {
            self.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::store::Kv;
    use serde_json::json;

    fn pods() -> &'static Kind {
        find("", "v1", "pods").unwrap()
    }

    fn spec(ns: Option<&str>, labels: Option<&str>, fields: Option<&str>) -> Arc<Spec> {
        Arc::new(Spec {
            kind: pods(),
            namespace: ns.map(String::from),
            selector: Selector::parse(pods(), labels, fields).unwrap(),
            class: format!("{ns:?}{labels:?}{fields:?}"),
            wire: Wire::Shared(Format::Json),
        })
    }

    fn pod(name: &str, ns: &str, node: &str, app: &str, rev: i64) -> Arc<Object> {
        let v = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": node}});
        Arc::new(Object::decode(&Kv {
            key: format!("/registry/pods/{ns}/{name}").into(),
            value: v.to_string().into(),
            create_revision: rev,
            mod_revision: rev,
        }))
    }

    #[test]
    fn events_reach_the_watches_their_indexes_select() {
        let mut w = Watchers::default();
        let mut n1 = w.add(spec(None, None, Some("spec.nodeName=n1")), 0);
        let mut n2 = w.add(spec(None, None, Some("spec.nodeName=n2")), 0);
        let mut other_ns = w.add(spec(Some("b"), None, None), 0);
        let mut web_a = w.add(spec(Some("a"), Some("app=web"), None), 0);
        let mut web_a2 = w.add(spec(Some("a"), Some("app=web"), None), 0);
        let mut all = w.add(spec(None, None, None), 0);
        w.dispatch(&CachedEvent::new(
            5,
            Some(pod("p", "a", "n1", "web", 5)),
            None,
        ));
        let (_, l1) = n1.rx.try_recv().unwrap();
        assert!(n2.rx.try_recv().is_err());
        assert!(other_ns.rx.try_recv().is_err());
        let (_, la) = web_a.rx.try_recv().unwrap();
        let (_, la2) = web_a2.rx.try_recv().unwrap();
        let (rev, lall) = all.rx.try_recv().unwrap();
        assert_eq!(rev, 5);
        // One encoding, shared by every watch that sends it.
        assert_eq!(la.as_ptr(), la2.as_ptr());
        assert_eq!(l1.as_ptr(), lall.as_ptr());
        let line: Value = serde_json::from_slice(&la).unwrap();
        assert_eq!(line["type"], "ADDED");
        // Moved to n2 and out of app=web: n1 and the web watches see it
        // leave (DELETED), n2 arrive.
        let moved = CachedEvent::new(
            6,
            Some(Arc::new(Object {
                create_revision: 5,
                ..Object::decode(&Kv {
                    key: "/registry/pods/a/p".into(),
                    value:
                        json!({"metadata": {"name": "p", "namespace": "a", "labels": {"app": "db"}},
                        "spec": {"nodeName": "n2"}})
                        .to_string()
                        .into(),
                    create_revision: 5,
                    mod_revision: 6,
                })
            })),
            Some(pod("p", "a", "n1", "web", 5)),
        );
        w.dispatch(&moved);
        let t = |rx: &mut mpsc::Receiver<(i64, Bytes)>| {
            let (_, l) = rx.try_recv().unwrap();
            let v: Value = serde_json::from_slice(&l).unwrap();
            v["type"].as_str().unwrap().to_string()
        };
        assert_eq!(t(&mut n1.rx), "DELETED");
        assert_eq!(t(&mut n2.rx), "ADDED");
        assert_eq!(t(&mut web_a.rx), "DELETED");
        assert_eq!(t(&mut all.rx), "MODIFIED");
        assert!(other_ns.rx.try_recv().is_err());
    }

    #[test]
    fn label_selected_watches_are_candidates_only_for_their_labels() {
        let mut w = Watchers::default();
        let web = w.add(spec(Some("a"), Some("app=web"), None), 0);
        let web_in = w.add(spec(None, Some("app in (web),tier!=x"), None), 0);
        let two = w.add(spec(None, Some("app in (web,db)"), None), 0);
        let mut ids = Vec::new();
        let db = pod("d", "a", "", "db", 3);
        w.candidates([Some(&db), None], &mut ids);
        // Only the unindexed set-based watch, not the label-indexed ones.
        assert_eq!(ids, vec![two.id]);
        ids.clear();
        let web_pod = pod("p", "b", "", "web", 4);
        w.candidates([Some(&db), Some(&web_pod)], &mut ids);
        assert_eq!(ids, vec![web.id, web_in.id, two.id]);
        w.remove(web.id);
        w.remove(web_in.id);
        assert!(w.by_label.is_empty());
    }

    #[test]
    fn a_full_queue_closes_its_watch_and_no_other() {
        let mut w = Watchers::default();
        let stalled = w.add(spec(None, None, None), 0);
        let mut reading = w.add(spec(None, None, None), 0);
        for rev in 1..=(QUEUE as i64 + 1) {
            w.dispatch(&CachedEvent::new(
                rev,
                Some(pod(&format!("p{rev}"), "a", "", "x", rev)),
                None,
            ));
            assert_eq!(reading.rx.try_recv().unwrap().0, rev);
        }
        assert_eq!(stalled.closed.get(), Some(&Closed::TooSlow));
        assert_eq!(w.len(), 1);
        // Events at or below a watch's start are not sent to it.
        let mut late = w.add(spec(None, None, None), 10);
        w.dispatch(&CachedEvent::new(9, Some(pod("q", "a", "", "x", 9)), None));
        assert!(late.rx.try_recv().is_err());
    }

    #[test]
    fn an_objects_json_is_encoded_once_for_its_lines_and_lists() {
        let p = pod("p", "a", "n1", "web", 4);
        let first = p.json(pods()).unwrap();
        // The same bytes, not a second encoding.
        assert_eq!(first.as_ptr(), p.json(pods()).unwrap().as_ptr());
        let ev = CachedEvent::new(4, Some(p.clone()), None);
        let line = ev.line(LineType::Added, pods(), Format::Json).unwrap();
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "ADDED");
        assert_eq!(&parsed["object"], p.value.as_ref().unwrap());
        assert!(line.ends_with(b"}\n"));
        let ws = spec(None, None, None);
        let initial = ws.initial_line(&p, p.value.as_ref().unwrap(), &AtomicBool::new(false));
        assert_eq!(initial.unwrap(), line);
    }

    #[test]
    fn table_lines_are_encoded_once_per_form_and_shared() {
        let mut w = Watchers::default();
        let opts = table::Options {
            version: "v1",
            include: table::Include::Metadata,
        };
        let table_spec = || {
            Arc::new(Spec {
                wire: Wire::Table(opts),
                ..Arc::try_unwrap(spec(None, None, None)).ok().unwrap()
            })
        };
        let mut old = w.add(table_spec(), 0);
        w.dispatch(&CachedEvent::new(3, Some(pod("p", "a", "", "x", 3)), None));
        let mut new = w.add(table_spec(), 0);
        let ev = CachedEvent::new(4, Some(pod("q", "a", "", "x", 4)), None);
        w.dispatch(&ev);
        let line = |rx: &mut mpsc::Receiver<(i64, Bytes)>| rx.try_recv().unwrap().1;
        let (old_first, old_second, new_first) =
            (line(&mut old.rx), line(&mut old.rx), line(&mut new.rx));
        let columns = |l: &Bytes| {
            let v: Value = serde_json::from_slice(l).unwrap();
            assert_eq!(v["object"]["kind"], "Table", "{v}");
            v["object"]["columnDefinitions"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        };
        // Each watch's first line carries the columns, its later ones not.
        assert!(columns(&old_first) && columns(&new_first) && !columns(&old_second));
        // Another watch sent the same form of the same event: the same bytes.
        let mut third = w.add(table_spec(), 0);
        w.dispatch(&ev);
        let (third_first, new_second) = (line(&mut third.rx), line(&mut new.rx));
        assert_eq!(third_first.as_ptr(), new_first.as_ptr());
        assert_eq!(new_second.as_ptr(), old_second.as_ptr());
    }
}
