//! get and list (reference: kubernetes-apiserver.md §2: list pages, the
//! continue token, resourceVersion and resourceVersionMatch rules).

use std::ops::Bound;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{continue_token, list_stream, object, Api, Query, Reply, Target};
use crate::cache::event::Object;
use crate::cache::resource::Objects;
use crate::cache::{Cache, Freshness};
use crate::error::ApiError;
use crate::registry::Kind;
use crate::selector::Selector;
use crate::store::{prefix_end, StoreError};

/// Largest page asked of the store while a selector filters short pages.
const MAX_PAGE: i64 = 10_000;

/// The latest state of an object: a quorum read of the store.
pub async fn get(api: &Api, t: &Target<'_>, name: &str) -> Result<Value, ApiError> {
    get_fresh(api, t, name, None).await
}

/// A GET, answered as kube-apiserver answers it: resourceVersion "0" (any
/// state) or N (not older than N) from the watch cache, once it is that
/// fresh; unset, or a cache that cannot catch up in time: the store.
pub async fn get_reply(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    q: &Query,
) -> Result<Value, ApiError> {
    let freshness = match q.get("resourceVersion") {
        None | Some("") => None,
        Some("0") => Some(Freshness::Any),
        Some(rv) => Some(Freshness::NotOlderThan(
            rv.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion: {rv:?}")))?,
        )),
    };
    get_fresh(api, t, name, freshness).await
}

async fn get_fresh(
    api: &Api,
    t: &Target<'_>,
    name: &str,
    freshness: Option<Freshness>,
) -> Result<Value, ApiError> {
    let key = api.key(t.kind, t.namespace, name);
    if let (Some(freshness), Some(cache)) = (freshness, api.cache(t.kind)) {
        if cache.fresh(freshness).await? {
            let end = format!("{key}\0");
            if let Some((objects, _)) = cache.snapshot(key.as_bytes(), end.as_bytes()) {
                let object = objects
                    .first()
                    .ok_or_else(|| ApiError::not_found(t.kind, name))?;
                return match &object.value {
                    Ok(_) => object
                        .served(t.kind)
                        .ok_or_else(|| ApiError::not_found(t.kind, name)),
                    Err(e) => Err(e.clone()),
                };
            }
        }
    }
    let (kv, revision) = api.store.get(key.as_bytes()).await?;
    if let Some(Freshness::NotOlderThan(min)) = freshness {
        if min > revision {
            return Err(ApiError::Timeout(format!(
                "Too large resource version: {min}, current: {revision}"
            )));
        }
    }
    let kv = kv.ok_or_else(|| ApiError::not_found(t.kind, name))?;
    object::decode_as(t.kind, &kv)
}

/// Which revision a list reads at, from resourceVersion(Match) and continue.
enum ReadAt {
    /// The latest revision; with `min` = the revision it must not be older than.
    Latest {
        min: Option<i64>,
    },
    Exact(i64),
}

fn read_at(q: &Query, limit: i64) -> Result<ReadAt, ApiError> {
    let rv = q.get("resourceVersion");
    let rvm = q.get("resourceVersionMatch");
    let n = |rv: &str| {
        rv.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid resourceVersion: {rv:?}")))
    };
    match (rv, rvm) {
        (None, None) | (Some("0"), None | Some("NotOlderThan")) => Ok(ReadAt::Latest { min: None }),
        (None, Some(_)) => Err(ApiError::Unprocessable(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
        )),
        (Some("0"), Some("Exact")) => Err(ApiError::Unprocessable(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
        )),
        (Some(rv), Some("Exact")) => Ok(ReadAt::Exact(n(rv)?)),
        (Some(rv), Some("NotOlderThan")) => Ok(ReadAt::Latest { min: Some(n(rv)?) }),
        // Legacy: an RV with a limit is exact, without one "not older than".
        (Some(rv), None) if limit > 0 => Ok(ReadAt::Exact(n(rv)?)),
        (Some(rv), None) => Ok(ReadAt::Latest { min: Some(n(rv)?) }),
        (_, Some(other)) => Err(ApiError::Unprocessable(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// Whether the watch cache answers a list (kube-apiserver's delegator
/// rules), and how fresh it must be: resourceVersion "0" (any limit,
/// ignored) or NotOlderThan N without a limit, and consistent lists without
/// a limit. Consistent paged lists and their continues are read from the
/// cache's snapshots before this (see `listed`); exact reads and paged
/// reads at a revision go to the store.
fn from_cache(q: &Query, limit: i64) -> Result<Option<Freshness>, ApiError> {
    let rv = q.get("resourceVersion");
    Ok(match read_at(q, limit)? {
        ReadAt::Latest { min: None } if rv == Some("0") => Some(Freshness::Any),
        _ if limit > 0 => None,
        ReadAt::Latest { min: None } => Some(Freshness::Consistent),
        ReadAt::Latest { min: Some(n) } => Some(Freshness::NotOlderThan(n)),
        ReadAt::Exact(_) => None,
    })
}

/// A list's items from the watch cache: the cached objects themselves,
/// selected, in key order, and the revision they are at. Encoded straight
/// from the cache when sent (see `list_stream`), never copied first.
pub struct CachedItems {
    pub kind: &'static Kind,
    pub revision: i64,
    pub objects: Vec<Arc<Object>>,
    /// A page's continue token, when keys remain.
    pub continue_token: Option<String>,
    /// The keys after a page (without a selector), as remainingItemCount.
    pub remaining: Option<i64>,
}

impl CachedItems {
    /// The list's metadata.
    pub fn metadata(&self) -> Value {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if let Some(token) = &self.continue_token {
            meta["continue"] = json!(token);
        }
        if let Some(n) = self.remaining {
            meta["remainingItemCount"] = json!(n);
        }
        meta
    }
}

impl CachedItems {
    /// The list as a value (for Tables, protobuf, deletecollection): each
    /// object copied once, as its kind serves it.
    fn into_value(self) -> Value {
        let items = self
            .objects
            .iter()
            .filter_map(|o| o.served(self.kind))
            .collect();
        list_value(self.kind, self.metadata(), items)
    }
}

/// A `{Kind}List` of `items` with `metadata`; the items are moved in (the
/// `json!` macro would copy every one of them).
fn list_value(kind: &Kind, metadata: Value, items: Vec<Value>) -> Value {
    let mut list = Map::new();
    list.insert("kind".into(), json!(format!("{}List", kind.kind)));
    list.insert("apiVersion".into(), json!(kind.api_version()));
    list.insert("metadata".into(), metadata);
    list.insert("items".into(), Value::Array(items));
    Value::Object(list)
}

/// The cache's objects in `range` that `selector` selects, once the cache
/// is `freshness` fresh; None: the store answers (the cache could not catch
/// up in time). An unreadable object fails the list, as a list from the
/// store would.
async fn cached_items(
    cache: &Cache,
    t: &Target<'_>,
    selector: &Selector,
    range: (&[u8], &[u8]),
    freshness: Freshness,
) -> Result<Option<CachedItems>, ApiError> {
    if !cache.fresh(freshness).await? {
        return Ok(None);
    }
    let Some((mut objects, revision)) = cache.snapshot(range.0, range.1) else {
        return Ok(None);
    };
    let mut selected = Ok(());
    objects.retain(|o| match &o.value {
        Ok(v) => selector.matches(v),
        Err(e) => {
            selected = Err(e.clone());
            false
        }
    });
    selected?;
    Ok(Some(CachedItems {
        kind: t.kind,
        revision,
        objects,
        continue_token: None,
        remaining: None,
    }))
}

/// A page of at most `limit` selected objects of `snapshot` from `start`
/// (below `end`), with the continue token of the next page at the same
/// revision.
fn snapshot_page(
    t: &Target<'_>,
    snapshot: &Objects,
    revision: i64,
    selector: &Selector,
    (prefix, start, end): (&str, &[u8], &[u8]),
    limit: i64,
) -> Result<CachedItems, ApiError> {
    let mut range = snapshot.range::<_, [u8]>((Bound::Included(start), Bound::Excluded(end)));
    let mut objects = Vec::new();
    let mut last_key = None;
    for (key, object) in range.by_ref() {
        match &object.value {
            Ok(v) if selector.matches(v) => objects.push(object.clone()),
            Ok(_) => {}
            Err(e) => return Err(e.clone()),
        }
        last_key = Some(key);
        if objects.len() as i64 == limit {
            break;
        }
    }
    let rest = range.count() as i64;
    let continue_token = last_key.filter(|_| rest > 0).map(|k| {
        let rel = String::from_utf8_lossy(&k[prefix.len().min(k.len())..]).to_string();
        continue_token::encode(revision, &format!("{rel}\0"))
    });
    let remaining = (continue_token.is_some() && selector.is_empty()).then_some(rest);
    Ok(CachedItems {
        kind: t.kind,
        revision,
        objects,
        continue_token,
        remaining,
    })
}

/// A list, answered as kube-apiserver answers it: from the watch cache
/// when it may, streamed as JSON when `streamable` (no Table or protobuf
/// asked for), else as one value.
pub async fn list_reply(
    api: &Api,
    t: &Target<'_>,
    q: &Query,
    streamable: bool,
) -> Result<Reply, ApiError> {
    let body = match listed(api, t, q).await? {
        Listed::Cached(items) if streamable => return Ok(Reply::Stream(list_stream::json(items))),
        Listed::Cached(items) => items.into_value(),
        Listed::Value(v) => v,
    };
    Ok(Reply::Json { code: 200, body })
}

/// A list as one value (deletecollection reads one).
pub async fn list(api: &Api, t: &Target<'_>, q: &Query) -> Result<Value, ApiError> {
    Ok(match listed(api, t, q).await? {
        Listed::Cached(items) => items.into_value(),
        Listed::Value(v) => v,
    })
}

enum Listed {
    Cached(CachedItems),
    Value(Value),
}

async fn listed(api: &Api, t: &Target<'_>, q: &Query) -> Result<Listed, ApiError> {
    if q.flag("sendInitialEvents")? {
        return Err(ApiError::Unprocessable(
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list".into(),
        ));
    }
    let selector = Selector::parse(t.kind, q.get("labelSelector"), q.get("fieldSelector"))?;
    let limit = q.int("limit")?.unwrap_or(0).max(0);
    let prefix = api.collection(t.kind, t.namespace);
    // metadata.name=x in a namespace (kubectl wait, delete --wait) reads one key.
    let pinned = match (
        selector.pinned_name(),
        t.namespace.is_some() || !t.kind.namespaced,
    ) {
        (Some(name), true) => Some(format!("{prefix}{name}")),
        _ => None,
    };
    let end = match &pinned {
        Some(key) => format!("{key}\0").into_bytes(),
        None => prefix_end(prefix.as_bytes()),
    };
    // Paged lists from the cache's snapshots (kube-apiserver's
    // ListFromCacheSnapshot): a consistent first page pins the cache's
    // objects at its revision; its continue pages read the same snapshot
    // while it is kept, else the store at that revision.
    if let (Some(cache), true) = (api.cache(t.kind), limit > 0) {
        let start = pinned.clone().unwrap_or_else(|| prefix.clone());
        let snapshot = match q.get("continue") {
            None if q.get("resourceVersion").is_none()
                && q.get("resourceVersionMatch").is_none()
                && cache.fresh(Freshness::Consistent).await? =>
            {
                cache
                    .pin()
                    .map(|(objects, revision)| (objects, revision, start.into_bytes()))
            }
            Some(token) if matches!(q.get("resourceVersion"), None | Some("0")) => {
                let (rv, rel) = continue_token::decode(token)?;
                cache
                    .pinned(rv)
                    .map(|objects| (objects, rv, format!("{prefix}{rel}").into_bytes()))
            }
            _ => None,
        };
        if let Some((objects, revision, start)) = snapshot {
            let bounds = (prefix.as_str(), start.as_slice(), end.as_slice());
            return Ok(Listed::Cached(snapshot_page(
                t, &objects, revision, &selector, bounds, limit,
            )?));
        }
    }
    if q.get("continue").is_none() {
        if let (Some(cache), Some(freshness)) = (api.cache(t.kind), from_cache(q, limit)?) {
            let start = pinned.clone().unwrap_or_else(|| prefix.clone());
            if let Some(items) =
                cached_items(&cache, t, &selector, (start.as_bytes(), &end), freshness).await?
            {
                return Ok(Listed::Cached(items));
            }
        }
    }
    let (mut revision, mut start, min, continuing) = match q.get("continue") {
        Some(token) => {
            if !matches!(q.get("resourceVersion"), None | Some("0")) {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let (rv, rel) = continue_token::decode(token)?;
            (rv.max(0), format!("{prefix}{rel}").into_bytes(), None, true)
        }
        None => {
            let start = pinned
                .clone()
                .unwrap_or_else(|| prefix.clone())
                .into_bytes();
            match read_at(q, limit)? {
                ReadAt::Latest { min } => (0, start, min, false),
                ReadAt::Exact(rv) => (rv, start, None, false),
            }
        }
    };

    let mut items = Vec::new();
    let mut page_limit = limit;
    let mut more = false;
    let mut last_key: Option<Vec<u8>> = None;
    let mut first_count = None;
    loop {
        let page = match api.store.list(&start, &end, page_limit, revision).await {
            Ok(p) => p,
            Err(StoreError::Compacted { .. }) if continuing => return Err(ApiError::Expired(
                "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter."
                    .into(),
            )),
            Err(e) => return Err(e.into()),
        };
        if revision == 0 {
            revision = page.revision;
            if let Some(min) = min.filter(|m| *m > revision) {
                return Err(ApiError::Timeout(format!(
                    "Too large resource version: {min}, current: {revision}"
                )));
            }
        }
        first_count.get_or_insert(page.count);
        let returned = page.kvs.len();
        let mut filled = false;
        for (i, kv) in page.kvs.iter().enumerate() {
            last_key = Some(kv.key.to_vec());
            let obj = object::decode_as(t.kind, kv)?;
            if selector.matches(&obj) {
                items.push(obj);
            }
            if limit > 0 && items.len() as i64 == limit {
                more = i + 1 < returned || page.more;
                filled = true;
                break;
            }
        }
        if filled || !page.more || limit == 0 {
            break;
        }
        match &last_key {
            Some(k) => {
                start = k.clone();
                start.push(0);
            }
            None => break,
        }
        page_limit = (page_limit * 2).min(MAX_PAGE);
    }

    let mut meta = json!({"resourceVersion": revision.to_string()});
    if more {
        if let Some(k) = last_key {
            let rel = String::from_utf8_lossy(&k[prefix.len().min(k.len())..]).to_string();
            meta["continue"] = json!(continue_token::encode(revision, &format!("{rel}\0")));
            if selector.is_empty() {
                if let Some(count) = first_count {
                    meta["remainingItemCount"] = json!(count - items.len() as i64);
                }
            }
        }
    }
    Ok(Listed::Value(list_value(t.kind, meta, items)))
}
