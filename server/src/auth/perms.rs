//! Whether a user's roles cover a key range, as etcd's `rangePermCache`
//! decides it: the permissions of every role of the user, of the access
//! asked, merged into intervals; the request's range must lie inside one.

use oxetcd_proto::authpb::permission::Type as PermType;
use oxetcd_proto::authpb::Role;

/// What a request does to a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn granted_by(self, perm: i32) -> bool {
        match PermType::try_from(perm) {
            Ok(PermType::Readwrite) => true,
            Ok(PermType::Read) => self == Access::Read,
            Ok(PermType::Write) => self == Access::Write,
            Err(_) => false,
        }
    }
}

/// The end of an interval: a key (exclusive), or past every key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinity,
}

/// `[key, range_end)` in etcd's notation as an interval: an empty
/// `range_end` is the key alone (`[key, key\0)`), `"\0"` every key from
/// `key` on.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Key(next)
        }
        [0] => End::Infinity,
        end => End::Key(end.to_vec()),
    };
    (key.to_vec(), end)
}

/// Whether `roles` grant `access` on every key of `[key, range_end)`.
pub fn covers<'a>(
    roles: impl IntoIterator<Item = &'a Role>,
    key: &[u8],
    range_end: &[u8],
    access: Access,
) -> bool {
    let mut granted: Vec<(Vec<u8>, End)> = roles
        .into_iter()
        .flat_map(|role| role.key_permission.iter())
        .filter(|perm| access.granted_by(perm.perm_type))
        .map(|perm| interval(&perm.key, &perm.range_end))
        .collect();
    granted.sort();
    let (want_from, want_to) = interval(key, range_end);
    // A range whose end is not past its start asks for nothing etcd would
    // read; it is still checked as the key alone, as etcd does.
    let want_to = match want_to {
        End::Key(end) if end <= want_from => interval(key, b"").1,
        other => other,
    };
    // Merge touching and overlapping intervals, then look for one holding
    // the request's.
    let mut merged: Vec<(Vec<u8>, End)> = Vec::new();
    for (from, to) in granted {
        if let Some((_, last_to)) = merged.last_mut() {
            let touches = match &*last_to {
                End::Infinity => true,
                End::Key(end) => from <= *end,
            };
            if touches {
                if to > *last_to {
                    *last_to = to;
                }
                continue;
            }
        }
        merged.push((from, to));
    }
    merged
        .iter()
        .any(|(from, to)| *from <= want_from && want_to <= *to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::authpb::Permission;

    fn role(perms: &[(&str, &str, PermType)]) -> Role {
        Role {
            name: "r".into(),
            key_permission: perms
                .iter()
                .map(|(k, e, t)| Permission {
                    perm_type: *t as i32,
                    key: k.as_bytes().to_vec().into(),
                    range_end: e.as_bytes().to_vec().into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_single_key_permission_covers_that_key_only() {
        let r = role(&[("foo", "", PermType::Readwrite)]);
        assert!(covers([&r], b"foo", b"", Access::Read));
        assert!(covers([&r], b"foo", b"", Access::Write));
        assert!(!covers([&r], b"foo1", b"", Access::Read));
        assert!(!covers([&r], b"foo", b"fop", Access::Read));
    }

    #[test]
    fn access_types_are_kept_apart() {
        let r = role(&[("a", "", PermType::Read), ("b", "", PermType::Write)]);
        assert!(covers([&r], b"a", b"", Access::Read));
        assert!(!covers([&r], b"a", b"", Access::Write));
        assert!(covers([&r], b"b", b"", Access::Write));
        assert!(!covers([&r], b"b", b"", Access::Read));
    }

    #[test]
    fn ranges_from_several_roles_merge_and_from_key_reaches_the_end() {
        let r1 = role(&[("a", "c", PermType::Read)]);
        let r2 = role(&[("c", "e", PermType::Readwrite)]);
        assert!(covers([&r1, &r2], b"a", b"e", Access::Read));
        assert!(covers([&r1, &r2], b"b", b"d", Access::Read));
        assert!(!covers([&r1, &r2], b"a", b"f", Access::Read));
        assert!(!covers([&r1, &r2], b"a", b"d", Access::Write));
        let from = role(&[("k", "\0", PermType::Write)]);
        assert!(covers([&from], b"zzz", b"", Access::Write));
        assert!(covers([&from], b"k", b"\0", Access::Write));
        assert!(!covers([&from], b"j", b"\0", Access::Write));
        assert!(!covers([&r1], b"a", b"\0", Access::Read));
    }

    #[test]
    fn no_role_covers_nothing() {
        assert!(!covers([], b"a", b"", Access::Read));
    }
}
