//! The criterion benchmarks' fixtures (benches/common/fixtures.rs) hold what
//! they say. They are tested here because bench targets are not run by
//! `cargo test`.

#[allow(dead_code)] // the benchmarks use the rest
#[path = "../benches/common/fixtures.rs"]
mod fixtures;

use oxetcd_storage::{KeyRange, RangeOptions};

use fixtures::*;

#[test]
fn keys_sort_in_index_order_under_the_prefix() {
    assert_eq!(key(42), "/registry/pods/default/pod-000042");
    assert!(key(9) < key(10));
    let end = prefix_end(PREFIX.as_bytes());
    assert_eq!(end, "/registry/pods/default0");
    assert!(key(999_999) < end);
}

#[test]
fn fixture_store_holds_every_key_at_one_revision_each() {
    let dir = tempfile::tempdir().unwrap();
    let n = LOAD_BATCH + 7; // a partial last batch
    let empty_rev = open_store(tempfile::tempdir().unwrap().path()).current_revision();
    let store = store_with_keys(dir.path(), n, 16);
    assert_eq!(store.current_revision(), empty_rev + n as i64);
    let end = prefix_end(PREFIX.as_bytes());
    let all = KeyRange::new(PREFIX.as_bytes(), &end);
    let opts = RangeOptions {
        count_only: true,
        ..RangeOptions::default()
    };
    assert_eq!(store.range(all, &opts).unwrap().count, n as i64);

    put_all(&store, n, 16);
    assert_eq!(store.current_revision(), empty_rev + 2 * n as i64);
    let got = store
        .range(KeyRange::new(&key(3), b""), &RangeOptions::default())
        .unwrap();
    assert_eq!((got.kvs[0].version, got.kvs[0].value.len()), (2, 16));
}

#[test]
fn a_cloned_store_holds_the_template_history() {
    let template = tempfile::tempdir().unwrap();
    let (rev, hash) = {
        let store = store_with_keys(template.path(), 10, 8);
        put_all(&store, 10, 8);
        (store.current_revision(), store.hash_kv(0).unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let store = clone_store(template.path(), &dir.path().join("store"));
    assert_eq!(store.current_revision(), rev);
    assert_eq!(store.hash_kv(0).unwrap(), hash);
}

#[test]
fn key_picker_covers_the_key_space() {
    let mut picker = KeyPicker::new(10);
    let mut seen = [false; 10];
    for _ in 0..1_000 {
        seen[picker.next_index()] = true;
    }
    assert!(seen.iter().all(|s| *s));
}
