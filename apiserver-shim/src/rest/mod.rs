//! The resource verbs over the store: what each request does, whatever the
//! kind (every kind-specific rule comes from the registry table).
//!
//! - `read`: get, list (limit/continue, selectors, resourceVersion rules);
//! - `watch`: watch streams;
//! - `create`, `update` (PUT, /status, and the guarded update loop every
//!   write shares), `patch` (the four patch types; `strategic`: strategic
//!   merge patch), `delete` (DELETE, deletecollection, finalizers), `gc`
//!   (what the garbage collector does after a delete: propagationPolicy);
//! - `scale`: the /scale subresource (autoscaling/v1 Scale);
//! - `namespaces`: the default namespaces and namespace termination;
//! - `crds`: CRDs' status, the registry's custom kinds, their cleanup;
//! - `object`, `query`, `continue_token`: the pieces they share.

mod continue_token;
pub mod crds;
mod create;
mod current;
mod delete;
mod gc;
mod list_stream;
pub mod namespaces;
pub mod object;
mod patch;
mod query;
mod read;
mod scale;
mod strategic;
mod update;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub use self::query::Query;
use crate::cache::{self, Cache, Caches};
use crate::error::ApiError;
use crate::registry::{self, Kind, Registry};
use crate::route::ResourcePath;
use crate::store::lease::Leases;
use crate::store::Store;
use crate::table;

/// The API's state: its store, the key prefix (--etcd-prefix), the kinds
/// served, and the leases of objects with a TTL.
#[derive(Clone)]
pub struct Api {
    store: Arc<dyn Store>,
    prefix: String,
    /// --event-ttl: how long core/v1 events live (None: for ever).
    event_ttl: Option<Duration>,
    leases: Arc<Leases>,
    registry: Registry,
    /// Serializes this server's CRD reconciliations (`crds`).
    crd_lock: Arc<tokio::sync::Mutex<()>>,
    /// The watch caches (None: --default-watch-cache-size=0, every read
    /// goes to the store).
    caches: Option<Arc<Caches>>,
}

/// How a resource request's answer is encoded, as negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// application/vnd.kubernetes.protobuf (watches: length-prefixed frames).
    Protobuf,
    /// Reads answer a meta.k8s.io Table of this version.
    Table(&'static str),
}

/// One resource request, as the HTTP layer hands it over.
pub struct Request {
    pub method: hyper::Method,
    pub path: ResourcePath,
    pub query: Query,
    /// The Content-Type's media type, without parameters.
    pub content_type: Option<String>,
    /// The User-Agent: the default field manager of writes.
    pub user_agent: Option<String>,
    pub body: Bytes,
    /// What the answer's `Warning: 299` headers say (fieldValidation=Warn);
    /// shared with the HTTP layer, which sends them.
    pub warnings: Warnings,
}

/// A request's warnings. Set, not appended to: a guarded write may run its
/// change more than once, each time finding the same ones.
#[derive(Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    pub fn set(&self, warnings: Vec<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = warnings;
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What a resource request answers.
pub enum Reply {
    Json {
        code: u16,
        body: Value,
    },
    /// A watch: its lines (JSON lines, or protobuf frames as asked), until
    /// the sender is dropped.
    Stream(mpsc::Receiver<Bytes>),
}

fn ok(body: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json { code: 200, body })
}

/// A resolved request target: the kind, and the namespace and name as given.
pub(crate) struct Target<'a> {
    pub kind: &'static Kind,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Api {
    pub fn new(store: Arc<dyn Store>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_end_matches('/').to_string(),
            event_ttl: None,
            leases: Arc::default(),
            registry: Registry::new(),
            crd_lock: Arc::default(),
            caches: None,
        }
    }

    /// Lists and watches are served from watch caches bounded by `config`
    /// (--default-watch-cache-size).
    pub fn with_watch_cache(self, config: cache::Config) -> Self {
        let caches = Arc::new(Caches::new(self.store.clone(), config));
        Self {
            caches: Some(caches),
            ..self
        }
    }

    /// The watch cache of `kind`'s resource, if it has one.
    pub(crate) fn cache(&self, kind: &Kind) -> Option<Arc<Cache>> {
        let caches = self.caches.as_ref().filter(|_| cache::cached(kind))?;
        Some(caches.get(&self.collection(kind, None)))
    }

    /// Starts the built-in kinds' caches (kube-apiserver fills them at
    /// start-up), so that their windows reach back to the server's start.
    pub fn start_caches(&self) {
        for kind in registry::KINDS {
            let _ = self.cache(kind);
        }
    }

    /// Events written from now on live `ttl` (kube-apiserver's --event-ttl).
    pub fn with_event_ttl(self, ttl: Duration) -> Self {
        Self {
            event_ttl: Some(ttl),
            ..self
        }
    }

    /// The lease a write of a `kind` object attaches (0: none). As in
    /// kube-apiserver only events have a TTL, given on every create and
    /// update.
    pub(crate) async fn lease(&self, kind: &Kind) -> Result<i64, ApiError> {
        let is_event = kind.group.is_empty() && kind.resource == "events";
        match self.event_ttl {
            Some(ttl) if is_event && ttl.as_secs() > 0 => {
                Ok(self.leases.lease(self.store.as_ref(), ttl).await?)
            }
            _ => Ok(0),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn key(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> String {
        object::key(&self.prefix, kind, namespace, name)
    }

    pub(crate) fn collection(&self, kind: &Kind, namespace: Option<&str>) -> String {
        object::collection_prefix(&self.prefix, kind, namespace)
    }

    /// Serves one resource request.
    pub async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        self.handle_as(req, Encoding::Json).await
    }

    /// Serves one resource request, answered in `encoding`: a Table is
    /// what reads (get, list, watch) answer with; protobuf is what a watch
    /// streams (other answers are converted by the HTTP layer).
    pub async fn handle_as(&self, req: Request, encoding: Encoding) -> Result<Reply, ApiError> {
        let table = match encoding {
            Encoding::Table(v) => Some(v),
            _ => None,
        };
        let p = &req.path;
        let kind = self
            .registry
            .find(&p.group, &p.version, &p.resource)
            .ok_or(ApiError::UnknownPath)?;
        // A namespaced kind under /namespaces/{ns}/, or across all namespaces
        // for lists and watches; a cluster-scoped kind never under one.
        if p.namespace.is_some() && !kind.namespaced {
            return Err(ApiError::UnknownPath);
        }
        let target = Target {
            kind,
            namespace: p.namespace.as_deref(),
            name: p.name.as_deref(),
        };
        if kind.namespaced && target.namespace.is_none() && target.name.is_some() {
            return Err(ApiError::UnknownPath);
        }
        let sub = p.subresource.as_deref();
        match sub {
            None => {}
            Some("status") if kind.status => {}
            Some("scale") if kind.scale => {}
            Some(_) => return Err(ApiError::UnknownPath),
        }
        if matches!(
            req.method,
            hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH
        ) {
            field_validation(kind, &req.query)?;
        }
        let watch = p.watch || req.query.flag("watch")?;
        let table = match table {
            Some(v) if req.method == hyper::Method::GET && sub != Some("scale") => {
                Some(table::Options::parse(v, &req.query)?)
            }
            _ => None,
        };
        let protobuf = encoding == Encoding::Protobuf;
        let reply = match self.verb(&req, &target, watch, table, protobuf).await? {
            Reply::Json { code, body } => match table {
                Some(opts) if target.name.is_none() => Reply::Json {
                    code,
                    body: table::list(kind, &body, opts),
                },
                Some(opts) => Reply::Json {
                    code,
                    body: table::one(kind, &body, opts, true),
                },
                None => Reply::Json { code, body },
            },
            stream => stream,
        };
        // A CRD written here is reconciled before the answer, so that its
        // resources are served by the time the client sees it. The write
        // itself succeeded: a failed reconciliation is left to the CRD
        // watch, which reconciles again.
        if std::ptr::eq(kind, registry::crds()) && req.method != hyper::Method::GET {
            if let Err(e) = crds::reconcile(self).await {
                tracing::warn!("reconciling CRDs after a write: {e}");
            }
        }
        Ok(reply)
    }

    /// The verb a request names, on its resolved target.
    async fn verb(
        &self,
        req: &Request,
        target: &Target<'_>,
        watch: bool,
        table: Option<table::Options>,
        protobuf: bool,
    ) -> Result<Reply, ApiError> {
        let (p, kind, sub) = (&req.path, target.kind, req.path.subresource.as_deref());
        use hyper::Method;
        match (&req.method, target.name) {
            (&Method::GET, None) if watch => {
                watch::watch(self, target, &req.query, table, protobuf).await
            }
            (_, _) if p.watch => Err(ApiError::MethodNotAllowed {
                verb: req.method.to_string(),
                resource: kind.qualified_resource(),
            }),
            (&Method::GET, None) => {
                // Tables and protobuf are made from the list as a value.
                let streamable = table.is_none() && !protobuf;
                read::list_reply(self, target, &req.query, streamable).await
            }
            (&Method::GET, Some(name)) if sub == Some("scale") => {
                ok(scale::get(self, target, name).await?)
            }
            (&Method::PUT | &Method::PATCH, Some(name)) if sub == Some("scale") => {
                ok(scale::write(self, target, name, req).await?)
            }
            (&Method::GET, Some(name)) => {
                ok(read::get_reply(self, target, name, &req.query).await?)
            }
            (&Method::POST, None) => {
                let obj = create::create(self, target, req).await?;
                Ok(Reply::Json {
                    code: 201,
                    body: obj,
                })
            }
            (&Method::PUT, Some(name)) => ok(update::put(self, target, name, sub, req).await?),
            (&Method::PATCH, Some(name)) => patch::patch(self, target, name, sub, req).await,
            (&Method::DELETE, Some(name)) if sub.is_none() => {
                ok(delete::delete(self, target, name, req).await?)
            }
            (&Method::DELETE, None) => ok(delete::delete_collection(self, target, req).await?),
            (method, _) => Err(ApiError::MethodNotAllowed {
                verb: method.to_string(),
                resource: kind.qualified_resource(),
            }),
        }
    }
}

/// fieldValidation (checked by the verb on the object it writes,
/// [`check_fields`]): Strict refuses unknown fields; Warn (kube-apiserver's
/// default) drops them with a warning each; Ignore drops them silently.
/// Every built-in kind and every custom resource has the schema this
/// needs; Strict or Warn without one could check nothing, and is refused
/// rather than silently treated as Ignore.
fn field_validation(kind: &Kind, q: &Query) -> Result<(), ApiError> {
    match q.get("fieldValidation") {
        None | Some("Ignore") => Ok(()),
        Some("Strict" | "Warn") if crate::schema::schemas().root(kind).is_some() => Ok(()),
        Some(v @ ("Strict" | "Warn")) => Err(ApiError::BadRequest(format!(
            "fieldValidation={v} is not supported for {} by oxetcd-apiserver; \
             send fieldValidation=Ignore (kubectl: --validate=false)",
            kind.qualified_resource()
        ))),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

/// Under fieldValidation=Strict, refuses an object with undeclared fields
/// (those `stored`, the object it replaces, lacks).
pub(crate) fn strict_fields(
    kind: &Kind,
    q: &Query,
    stored: Option<&Value>,
    obj: &Value,
) -> Result<(), ApiError> {
    match q.get("fieldValidation") {
        Some("Strict") => crate::schema::validate::strict(kind, stored, obj),
        _ => Ok(()),
    }
}

/// fieldValidation on the object a write stores: Strict refuses undeclared
/// fields; otherwise they are dropped, and under Warn (also when the client
/// names no mode, as in kube-apiserver) each new one is a warning.
pub(crate) fn check_fields(
    kind: &Kind,
    req: &Request,
    stored: Option<&Value>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let mode = req.query.get("fieldValidation");
    // Duplicate keys of a whole-object body (JSON; YAML and protobuf
    // bodies cannot be checked for them here).
    let duplicates = match (&req.method, req.content_type.as_deref()) {
        (&hyper::Method::POST | &hyper::Method::PUT, None | Some("application/json")) => {
            object::duplicate_fields(&req.body)
        }
        _ => Vec::new(),
    };
    let duplicate = |f: &String| format!("duplicate field \"{f}\"");
    if mode == Some("Strict") {
        if !duplicates.is_empty() {
            let list: Vec<String> = duplicates.iter().map(duplicate).collect();
            return Err(ApiError::BadRequest(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                kind.kind,
                kind.version,
                kind.kind,
                list.join(", ")
            )));
        }
        return crate::schema::validate::strict(kind, stored, obj);
    }
    let dropped = crate::schema::validate::drop_unknown(kind, stored, obj);
    if mode != Some("Ignore") {
        req.warnings.set(
            dropped
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .chain(duplicates.iter().map(duplicate))
                .collect(),
        );
    }
    Ok(())
}

/// Content types the write verbs read whole objects of `kind` in: JSON,
/// YAML, and protobuf for the built-in kinds (a custom resource in protobuf
/// gets kube-apiserver's 415).
fn require_object_body(kind: &Kind, req: &Request) -> Result<(), ApiError> {
    match req.content_type.as_deref() {
        None | Some("application/json" | "application/yaml") => Ok(()),
        Some(crate::proto::MEDIA_TYPE) if kind.has_protobuf() => Ok(()),
        Some(_) if kind.has_protobuf() => Err(ApiError::UnsupportedMediaType(format!(
            "application/json, application/yaml, {}",
            crate::proto::MEDIA_TYPE
        ))),
        Some(_) => Err(ApiError::UnsupportedMediaType(
            "application/json, application/yaml".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_warn_and_strict_field_validation_are_accepted() {
        let cm = registry::find("", "v1", "configmaps").unwrap();
        assert!(field_validation(cm, &Query::parse(None)).is_ok());
        assert!(field_validation(cm, &Query::parse(Some("fieldValidation=Ignore"))).is_ok());
        assert!(field_validation(cm, &Query::parse(Some("fieldValidation=Strict"))).is_ok());
        assert!(field_validation(cm, &Query::parse(Some("fieldValidation=Warn"))).is_ok());
        let bogus = Query::parse(Some("fieldValidation=Bogus"));
        assert_eq!(field_validation(cm, &bogus).unwrap_err().code(), 400);
    }
}
