//! Where an update or a delete starts from, as kube-apiserver's
//! GuaranteedUpdate with a cached existing object: the watch cache's copy of
//! the object is a first guess, taken without a round trip to the store. The
//! write's Txn compares mod_revision, so a stale guess cannot be written
//! over; it only costs a retry. Whatever the guess alone decides (an error, a
//! no-op) is decided again from the store before it is answered.

use serde_json::Value;

use super::{object, Api};
use crate::error::ApiError;
use crate::registry::Kind;
use crate::store::Kv;

/// An object's state as an update or delete sees it.
pub(super) struct Current {
    pub value: Value,
    pub mod_revision: i64,
    /// Read from the store (or returned by a lost Txn): what it decides
    /// stands. A cached guess may be stale.
    pub authoritative: bool,
}

impl Current {
    /// The watch cache's copy of `key`, when the cache is ready and holds
    /// a readable one.
    pub fn cached(api: &Api, kind: &Kind, key: &str) -> Option<Current> {
        let cached = api.cache(kind)?.object(key.as_bytes())?;
        Some(Current {
            value: cached.served(kind)?,
            mod_revision: cached.mod_revision,
            authoritative: false,
        })
    }

    /// The store's state of `key` (a linearizable read).
    pub async fn stored(
        api: &Api,
        kind: &Kind,
        name: &str,
        key: &str,
    ) -> Result<Current, ApiError> {
        let (kv, _) = api.store.get(key.as_bytes()).await?;
        Current::from_kv(kind, name, kv)
    }

    /// The state a lost Txn returned, or the store's when `kv` is None (absent:
    /// 404).
    pub fn from_kv(kind: &Kind, name: &str, kv: Option<Kv>) -> Result<Current, ApiError> {
        let kv = kv.ok_or_else(|| ApiError::not_found(kind, name))?;
        Ok(Current {
            value: object::decode_as(kind, &kv)?,
            mod_revision: kv.mod_revision,
            authoritative: true,
        })
    }
}
