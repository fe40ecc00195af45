//! Range, as etcd's applier serves it: the store's read, then etcd's filters,
//! sort and limit on top.

use oxetcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxetcd_proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use oxetcd_proto::mvccpb::KeyValue;
use oxetcd_storage::{KeyRange, RangeOptions, RangeResult, Store, WriteTxn};

use crate::error::EtcdError;

/// Something ranges can be read from: the store (plain reads) or a write txn
/// (reads inside a Txn, which see the txn's own changes).
pub trait Reader {
    fn read(&self, range: KeyRange<'_>, opts: &RangeOptions)
        -> oxetcd_storage::Result<RangeResult>;
}

impl Reader for Store {
    fn read(
        &self,
        range: KeyRange<'_>,
        opts: &RangeOptions,
    ) -> oxetcd_storage::Result<RangeResult> {
        self.range(range, opts)
    }
}

impl Reader for WriteTxn<'_> {
    fn read(
        &self,
        range: KeyRange<'_>,
        opts: &RangeOptions,
    ) -> oxetcd_storage::Result<RangeResult> {
        self.range(range, opts)
    }
}

fn needs_everything(req: &RangeRequest) -> bool {
    // Sorting and revision filters see every key before the limit cuts.
    req.sort_order != SortOrder::None as i32
        || req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0
}

/// Serves a RangeRequest (already validated).
pub fn range(reader: &impl Reader, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    oxetcd_metrics::mvcc().range_total.inc();
    let limit = usize::try_from(req.limit).unwrap_or(0);
    let opts = RangeOptions {
        // One extra key tells whether there are more than `limit`.
        limit: if needs_everything(req) || limit == 0 {
            0
        } else {
            limit + 1
        },
        rev: req.revision,
        count_only: req.count_only,
    };
    let mut res = reader.read(KeyRange::new(&req.key, &req.range_end), &opts)?;
    filter(&mut res.kvs, req);
    sort(&mut res.kvs, req);
    let mut more = false;
    if limit > 0 && res.kvs.len() > limit {
        res.kvs.truncate(limit);
        more = true;
    }
    if req.keys_only {
        for kv in &mut res.kvs {
            kv.value = Default::default();
        }
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: res.rev,
            ..Default::default()
        }),
        kvs: res.kvs,
        more,
        count: res.count,
    })
}

fn filter(kvs: &mut Vec<KeyValue>, req: &RangeRequest) {
    let keep = |kv: &KeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    kvs.retain(keep);
}

fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    // The store returns keys ascending; etcd sorts ascending by default only
    // when another target is named.
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    // Stable sorts: ties keep key order, as etcd's (insertion) sort does.
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by(cmp),
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
    }
}
