//! The resource verbs over the store: what each request does, whatever the
//! kind (every kind-specific rule comes from the registry table).
//!
//! - `read`: get, list (limit/continue, selectors, resourceVersion rules);
//! - `watch`: watch streams;
//! - `create`, `update` (PUT, /status, and the guarded update loop every
//!   write shares), `patch` (the four patch types; `strategic`: strategic
//!   merge patch), `delete` (DELETE, deletecollection, finalizers);
//! - `scale`: the /scale subresource (autoscaling/v1 Scale);
//! - `namespaces`: the default namespaces and namespace termination;
//! - `object`, `query`, `continue_token`: the pieces they share.

mod continue_token;
mod create;
mod delete;
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

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

pub use self::query::Query;
use crate::error::ApiError;
use crate::registry::{self, Kind};
use crate::route::ResourcePath;
use crate::store::Store;

/// The API's state: its store and the key prefix (--etcd-prefix).
#[derive(Clone)]
pub struct Api {
    store: Arc<dyn Store>,
    prefix: String,
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
}

/// What a resource request answers.
pub enum Reply {
    Json {
        code: u16,
        body: Value,
    },
    /// A watch: one JSON line per item, until the sender is dropped.
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
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn key(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> String {
        object::key(&self.prefix, kind, namespace, name)
    }

    pub(crate) fn collection(&self, kind: &Kind, namespace: Option<&str>) -> String {
        object::collection_prefix(&self.prefix, kind, namespace)
    }

    /// Serves one resource request.
    pub async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        let p = &req.path;
        let kind =
            registry::find(&p.group, &p.version, &p.resource).ok_or(ApiError::UnknownPath)?;
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
        use hyper::Method;
        match (&req.method, target.name) {
            (&Method::GET, None) if watch => watch::watch(self, &target, &req.query).await,
            (_, _) if p.watch => Err(ApiError::MethodNotAllowed {
                verb: req.method.to_string(),
                resource: kind.qualified_resource(),
            }),
            (&Method::GET, None) => ok(read::list(self, &target, &req.query).await?),
            (&Method::GET, Some(name)) if sub == Some("scale") => {
                ok(scale::get(self, &target, name).await?)
            }
            (&Method::PUT | &Method::PATCH, Some(name)) if sub == Some("scale") => {
                ok(scale::write(self, &target, name, &req).await?)
            }
            (&Method::GET, Some(name)) => ok(read::get(self, &target, name).await?),
            (&Method::POST, None) => {
                let obj = create::create(self, &target, &req).await?;
                Ok(Reply::Json {
                    code: 201,
                    body: obj,
                })
            }
            (&Method::PUT, Some(name)) => ok(update::put(self, &target, name, sub, &req).await?),
            (&Method::PATCH, Some(name)) => patch::patch(self, &target, name, sub, &req).await,
            (&Method::DELETE, Some(name)) if sub.is_none() => {
                ok(delete::delete(self, &target, name, &req).await?)
            }
            (&Method::DELETE, None) => ok(delete::delete_collection(self, &target, &req).await?),
            (method, _) => Err(ApiError::MethodNotAllowed {
                verb: method.to_string(),
                resource: kind.qualified_resource(),
            }),
        }
    }
}

/// fieldValidation: Ignore keeps unknown fields as sent; Strict refuses
/// them for kinds with a schema (checked by the verb on the object it
/// writes, [`strict_fields`]). Warn needs warning headers, and Strict a
/// schema, which this server does not have for every kind: those are refused
/// rather than silently treated as Ignore.
fn field_validation(kind: &Kind, q: &Query) -> Result<(), ApiError> {
    match q.get("fieldValidation") {
        None | Some("Ignore") => Ok(()),
        Some("Strict") if crate::schema::schemas().root(kind).is_some() => Ok(()),
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

/// Content types the write verbs read.
fn require_json(req: &Request) -> Result<(), ApiError> {
    match req.content_type.as_deref() {
        None | Some("application/json") => Ok(()),
        Some(_) => Err(ApiError::UnsupportedMediaType("application/json".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_and_strict_field_validation_are_accepted() {
        let cm = registry::find("", "v1", "configmaps").unwrap();
        assert!(field_validation(cm, &Query::parse(None)).is_ok());
        assert!(field_validation(cm, &Query::parse(Some("fieldValidation=Ignore"))).is_ok());
        assert!(field_validation(cm, &Query::parse(Some("fieldValidation=Strict"))).is_ok());
        for v in ["Warn", "Bogus"] {
            let q = Query::parse(Some(&format!("fieldValidation={v}")));
            assert_eq!(field_validation(cm, &q).unwrap_err().code(), 400, "{v}");
        }
    }
}
