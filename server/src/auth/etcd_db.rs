//! The auth state in etcd's database layout (its snapshots and data dirs),
//! both ways: an etcd database with auth imports its users, roles, enabled
//! flag and revision, and our snapshots carry ours to etcd.
//!
//! ```text
//! bucket "auth":      "authEnabled"  -> 1 byte, 1 when enabled (0 when not)
//!                     "authRevision" -> u64 big-endian
//! bucket "authUsers": user name -> authpb.User (password: its bcrypt hash)
//! bucket "authRoles": role name -> authpb.Role
//! ```
//!
//! Our records (see `store`) hold the same values under other keys, so
//! moving them is renaming keys; values are decoded only to refuse a
//! corrupt database before it is imported.

use bytes::Bytes;
use oxetcd_proto::authpb::{Role, User};
use oxetcd_storage::bbolt::{BboltError, EtcdBucket, PageSource, Reader};
use prost::Message;

use super::store::{ENABLED, PREFIX, REVISION, ROLES, USERS};

const AUTH_BUCKET: &[u8] = b"auth";
const USERS_BUCKET: &[u8] = b"authUsers";
const ROLES_BUCKET: &[u8] = b"authRoles";
const ENABLED_KEY: &[u8] = b"authEnabled";
const REVISION_KEY: &[u8] = b"authRevision";

/// etcd's three auth buckets made of our auth records (`records` may hold
/// other cluster records: they are left out).
pub fn etcd_buckets(records: Vec<(String, Bytes)>) -> Vec<EtcdBucket> {
    let (mut auth, mut users, mut roles) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in records {
        if !key.starts_with(PREFIX) {
            continue;
        }
        let value = value.to_vec();
        if key == ENABLED {
            auth.push((ENABLED_KEY.to_vec(), value));
        } else if key == REVISION {
            auth.push((REVISION_KEY.to_vec(), value));
        } else if let Some(name) = key.strip_prefix(USERS) {
            users.push((name.as_bytes().to_vec(), value));
        } else if let Some(name) = key.strip_prefix(ROLES) {
            roles.push((name.as_bytes().to_vec(), value));
        }
    }
    vec![
        (AUTH_BUCKET, auth),
        (USERS_BUCKET, users),
        (ROLES_BUCKET, roles),
    ]
}

/// Our auth records made of an etcd database's auth buckets (none when it
/// has no auth state). A value that is not what etcd writes is refused.
pub fn records_from_etcd<S: PageSource>(
    db: &Reader<S>,
) -> Result<Vec<(String, Option<Bytes>)>, BboltError> {
    let mut records = Vec::new();
    db.for_each(AUTH_BUCKET, &mut |k, v| {
        let key = match k {
            ENABLED_KEY if v.len() == 1 => ENABLED,
            REVISION_KEY if v.len() == 8 => REVISION,
            ENABLED_KEY | REVISION_KEY => {
                return Err(corrupt(format!(
                    "auth {} is {} bytes",
                    String::from_utf8_lossy(k),
                    v.len()
                )))
            }
            _ => return Ok(()),
        };
        records.push((key.to_string(), Some(Bytes::copy_from_slice(v))));
        Ok(())
    })?;
    db.for_each(USERS_BUCKET, &mut |k, v| {
        let name = name(k, "user")?;
        let user = User::decode(v).map_err(|e| corrupt(format!("user {name:?}: {e}")))?;
        if user.name != k {
            return Err(corrupt(format!("user {name:?} is named otherwise inside")));
        }
        records.push((format!("{USERS}{name}"), Some(Bytes::copy_from_slice(v))));
        Ok(())
    })?;
    db.for_each(ROLES_BUCKET, &mut |k, v| {
        let name = name(k, "role")?;
        let role = Role::decode(v).map_err(|e| corrupt(format!("role {name:?}: {e}")))?;
        if role.name != k {
            return Err(corrupt(format!("role {name:?} is named otherwise inside")));
        }
        records.push((format!("{ROLES}{name}"), Some(Bytes::copy_from_slice(v))));
        Ok(())
    })?;
    Ok(records)
}

fn corrupt(what: String) -> BboltError {
    BboltError::Corrupt(format!("etcd auth: {what}"))
}

/// A user or role name: our record keys and etcd's requests hold UTF-8.
fn name<'k>(key: &'k [u8], what: &str) -> Result<&'k str, BboltError> {
    std::str::from_utf8(key).map_err(|_| corrupt(format!("{what} name {key:x?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use oxetcd_proto::authpb::{permission::Type, Permission};
    use oxetcd_storage::bbolt::Writer;

    use super::*;

    fn user(name: &str, roles: &[&str]) -> Vec<u8> {
        User {
            name: Bytes::copy_from_slice(name.as_bytes()),
            password: Bytes::from_static(b"$2a$10$hash"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            options: None,
        }
        .encode_to_vec()
    }

    fn role(name: &str) -> Vec<u8> {
        Role {
            name: Bytes::copy_from_slice(name.as_bytes()),
            key_permission: vec![Permission {
                perm_type: Type::Readwrite as i32,
                key: Bytes::from_static(b"a"),
                range_end: Bytes::from_static(b"b"),
            }],
        }
        .encode_to_vec()
    }

    fn db(buckets: Vec<EtcdBucket>) -> Reader<Vec<u8>> {
        let mut w = Writer::new(Cursor::new(Vec::new())).unwrap();
        w.bucket(b"key", std::iter::empty()).unwrap();
        for (name, entries) in buckets {
            w.bucket(name, entries.into_iter().map(Ok)).unwrap();
        }
        Reader::open(w.finish().unwrap().0.into_inner()).unwrap()
    }

    #[test]
    fn auth_records_go_to_etcds_buckets_and_come_back_the_same() {
        let records = vec![
            ("auth/enabled".to_string(), Bytes::from_static(&[1])),
            (
                "auth/revision".to_string(),
                Bytes::copy_from_slice(&9u64.to_be_bytes()),
            ),
            ("auth/roles/r1".to_string(), Bytes::from(role("r1"))),
            (
                "auth/users/root".to_string(),
                Bytes::from(user("root", &["root"])),
            ),
            (
                "auth/users/u1".to_string(),
                Bytes::from(user("u1", &["r1"])),
            ),
            // Not auth: left out.
            ("member/x".to_string(), Bytes::from_static(b"m")),
        ];
        let buckets = etcd_buckets(records.clone());
        assert_eq!(
            buckets[0],
            (
                AUTH_BUCKET,
                vec![
                    (b"authEnabled".to_vec(), vec![1]),
                    (b"authRevision".to_vec(), 9u64.to_be_bytes().to_vec()),
                ]
            )
        );
        assert_eq!(buckets[1].1.len(), 2);
        assert_eq!(buckets[1].1[1], (b"u1".to_vec(), user("u1", &["r1"])));
        assert_eq!(buckets[2].1, vec![(b"r1".to_vec(), role("r1"))]);

        let mut back = records_from_etcd(&db(buckets)).unwrap();
        back.sort();
        let want: Vec<_> = records
            .into_iter()
            .filter(|(k, _)| k.starts_with("auth/"))
            .map(|(k, v)| (k, Some(v)))
            .collect();
        assert_eq!(back, want);
    }

    #[test]
    fn a_database_without_auth_has_no_records_and_a_corrupt_one_is_refused() {
        assert!(records_from_etcd(&db(Vec::new())).unwrap().is_empty());
        let short_revision = db(vec![(
            AUTH_BUCKET,
            vec![(b"authRevision".to_vec(), vec![1])],
        )]);
        assert!(records_from_etcd(&short_revision).is_err());
        let misnamed = db(vec![(
            USERS_BUCKET,
            vec![(b"u2".to_vec(), user("u1", &[]))],
        )]);
        assert!(records_from_etcd(&misnamed).is_err());
        let garbage = db(vec![(
            ROLES_BUCKET,
            vec![(b"r".to_vec(), vec![0xff, 0xff])],
        )]);
        assert!(records_from_etcd(&garbage).is_err());
    }
}
