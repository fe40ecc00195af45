//! etcd v3 API wire types and gRPC service definitions for oxetcd.
//!
//! The protobuf files under `proto/etcd/` mirror etcd 3.5's public API
//! (`etcdserverpb`, `mvccpb`, `authpb`, `v3lockpb`, `v3electionpb`) with the
//! same package, service, message and field names, field numbers and enum
//! values, so stock etcd clients (etcdctl, clientv3, ...) can talk to oxetcd.
//! They are compiled at build time with prost/tonic; `protoc` is vendored.
//!
//! Every protobuf `bytes` field is generated as [`bytes::Bytes`].
//!
//! Every message also implements `serde::Serialize` and `Deserialize` in
//! protobuf's JSON mapping as etcd's JSON gateway uses it: proto field names
//! (`cluster_id`, `ID`), 64-bit integers as strings, bytes as base64, enums by
//! name, default values omitted; proto names, lowerCamelCase names, numbers
//! for 64-bit integers and enums are all accepted, unknown fields ignored.
//!
//! Each proto package is a module at the crate root, containing its messages,
//! plus a `<service>_server` module (server trait and tower service) and a
//! `<service>_client` module (client stub) for every service:
//!
//! ```
//! use oxetcd_proto::etcdserverpb::{PutRequest, RangeRequest};
//! use oxetcd_proto::mvccpb::KeyValue;
//! use prost::Message;
//!
//! let put = PutRequest {
//!     key: "foo".into(),
//!     value: "bar".into(),
//!     ..Default::default()
//! };
//! let wire = put.encode_to_vec();
//! assert_eq!(PutRequest::decode(wire.as_slice()).unwrap(), put);
//!
//! let _range = RangeRequest { key: "foo".into(), ..Default::default() };
//! let _kv = KeyValue::default();
//! ```
//!
//! A server implements e.g. [`etcdserverpb::kv_server::Kv`] and mounts
//! [`etcdserverpb::kv_server::KvServer`] on a `tonic` router.

/// etcd's `GetPrefixRangeEnd`: the range end that makes `[prefix, end)` every
/// key starting with `prefix`; `"\0"` (to the end of the key space) when every
/// byte of `prefix` is 0xff.
///
/// ```
/// assert_eq!(oxetcd_proto::prefix_end("lk/"), "lk0");
/// assert_eq!(oxetcd_proto::prefix_end(b"a\xff"), "b");
/// assert_eq!(oxetcd_proto::prefix_end(b"\xff"), "\0");
/// ```
pub fn prefix_end(prefix: impl AsRef<[u8]>) -> bytes::Bytes {
    let mut end = prefix.as_ref().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return bytes::Bytes::from(end);
        }
    }
    bytes::Bytes::from_static(b"\0")
}

/// Multi-version key-value types (`mvccpb`): `KeyValue`, `Event`.
#[allow(clippy::all, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// Auth store records (`authpb`): `User`, `Role`, `Permission`.
#[allow(clippy::all, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// The main client API (`etcdserverpb`): KV, Watch, Lease, Cluster,
/// Maintenance and Auth services with their messages.
#[allow(clippy::all, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// Distributed lock service (`v3lockpb`).
#[allow(clippy::all, missing_docs)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

/// Leader election service (`v3electionpb`).
#[allow(clippy::all, missing_docs)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Serialized `FileDescriptorSet` of all the etcd protos, for gRPC
/// reflection or a JSON gateway.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/etcd_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prost::Message;

    #[test]
    fn put_request_encodes_like_etcd() {
        let req = etcdserverpb::PutRequest {
            key: Bytes::from_static(b"foo"),
            value: Bytes::from_static(b"bar"),
            lease: 5,
            prev_kv: true,
            ..Default::default()
        };
        let expected: &[u8] = &[
            0x0a, 3, b'f', b'o', b'o', // field 1 (key), length-delimited
            0x12, 3, b'b', b'a', b'r', // field 2 (value), length-delimited
            0x18, 5, // field 3 (lease), varint
            0x20, 1, // field 4 (prev_kv), varint
        ];
        assert_eq!(req.encode_to_vec(), expected);
        assert_eq!(etcdserverpb::PutRequest::decode(expected).unwrap(), req);
    }

    #[test]
    fn key_value_decodes_from_etcd_bytes() {
        let wire: &[u8] = &[
            0x0a, 1, b'k', // key = 1
            0x10, 7, // create_revision = 2
            0x18, 9, // mod_revision = 3
            0x20, 2, // version = 4
            0x2a, 2, b'v', b'1', // value = 5
            0x30, 0x96, 0x01, // lease = 6 (150, two-byte varint)
        ];
        let kv = mvccpb::KeyValue::decode(Bytes::from_static(wire)).unwrap();
        assert_eq!(
            kv,
            mvccpb::KeyValue {
                key: Bytes::from_static(b"k"),
                create_revision: 7,
                mod_revision: 9,
                version: 2,
                value: Bytes::from_static(b"v1"),
                lease: 150,
            }
        );
        assert_eq!(kv.encode_to_vec(), wire);
    }

    #[test]
    fn enums_and_oneofs_match_etcd() {
        use etcdserverpb::{compare, range_request, watch_request, WatchRequest};

        assert_eq!(mvccpb::event::EventType::Put as i32, 0);
        assert_eq!(mvccpb::event::EventType::Delete as i32, 1);
        assert_eq!(range_request::SortTarget::Value as i32, 4);
        assert_eq!(compare::CompareResult::NotEqual as i32, 3);
        assert_eq!(compare::CompareTarget::Lease as i32, 4);
        assert_eq!(authpb::permission::Type::Readwrite as i32, 2);
        assert_eq!(etcdserverpb::AlarmType::Corrupt as i32, 2);
        assert_eq!(
            etcdserverpb::downgrade_request::DowngradeAction::Cancel as i32,
            2
        );

        // A progress request is field 3 of WatchRequest with an empty body.
        let req = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                etcdserverpb::WatchProgressRequest {},
            )),
        };
        assert_eq!(req.encode_to_vec(), [0x1a, 0]);

        // Compare.range_end is field 64: tag (64 << 3 | 2) = 0x202 -> 0x82 0x04.
        let cmp = etcdserverpb::Compare {
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        };
        assert_eq!(cmp.encode_to_vec(), [0x82, 0x04, 1, 0]);

        // StatusResponse.isLearner is field 10 (3.5).
        let status = etcdserverpb::StatusResponse {
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(status.encode_to_vec(), [0x50, 1]);
    }

    #[test]
    fn grpc_service_names_match_etcd() {
        use etcdserverpb::*;

        assert_eq!(kv_server::SERVICE_NAME, "etcdserverpb.KV");
        assert_eq!(watch_server::SERVICE_NAME, "etcdserverpb.Watch");
        assert_eq!(lease_server::SERVICE_NAME, "etcdserverpb.Lease");
        assert_eq!(cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
        assert_eq!(maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance");
        assert_eq!(auth_server::SERVICE_NAME, "etcdserverpb.Auth");
        assert_eq!(v3lockpb::lock_server::SERVICE_NAME, "v3lockpb.Lock");
        assert_eq!(
            v3electionpb::election_server::SERVICE_NAME,
            "v3electionpb.Election"
        );
    }

    #[test]
    fn file_descriptor_set_lists_all_packages() {
        let set = prost_types_lite::decode_file_names(FILE_DESCRIPTOR_SET);
        for pkg in [
            "mvccpb/kv.proto",
            "authpb/auth.proto",
            "etcdserverpb/rpc.proto",
            "v3lockpb/v3lock.proto",
            "v3electionpb/v3election.proto",
        ] {
            assert!(set.iter().any(|n| n == pkg), "{pkg} missing from {set:?}");
        }
    }

    /// The JSON etcd 3.4's gateway wrote for the same messages (curl against
    /// Debian's etcd): proto names, int64 as strings, defaults left out.
    #[test]
    fn json_matches_etcds_gateway() {
        let header = Some(etcdserverpb::ResponseHeader {
            cluster_id: 324952591200643719,
            member_id: 3319814642761637952,
            revision: 2,
            raft_term: 2,
        });
        let range = etcdserverpb::RangeResponse {
            header,
            kvs: vec![mvccpb::KeyValue {
                key: Bytes::from_static(b"foo"),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: Bytes::from_static(b"bar"),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            serde_json::to_string(&range).unwrap(),
            r#"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );

        let ttl = etcdserverpb::LeaseTimeToLiveResponse {
            header: None,
            id: 1234,
            ttl: 1,
            granted_ttl: 2,
            keys: vec![Bytes::from_static(b"foo")],
        };
        assert_eq!(
            serde_json::to_string(&ttl).unwrap(),
            r#"{"ID":"1234","TTL":"1","grantedTTL":"2","keys":["Zm9v"]}"#
        );

        // Enums by name; PUT is the default event type and is left out.
        let events = etcdserverpb::WatchResponse {
            watch_id: -1,
            events: vec![
                mvccpb::Event::default(),
                mvccpb::Event {
                    r#type: mvccpb::event::EventType::Delete as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&events).unwrap(),
            r#"{"watch_id":"-1","events":[{},{"type":"DELETE"}]}"#
        );
    }

    #[test]
    fn json_requests_take_proto_or_camel_case_names() {
        let by_proto: etcdserverpb::RangeRequest =
            serde_json::from_str(r#"{"key":"Zm9v","keys_only":true,"sort_order":"DESCEND"}"#)
                .unwrap();
        let by_camel: etcdserverpb::RangeRequest =
            serde_json::from_str(r#"{"key":"Zm9v","keysOnly":true,"sortOrder":2}"#).unwrap();
        assert_eq!(by_proto, by_camel);
        assert_eq!(
            by_proto.sort_order,
            etcdserverpb::range_request::SortOrder::Descend as i32
        );
        // Unknown fields are ignored, as grpc-gateway v1 does.
        let put: etcdserverpb::PutRequest =
            serde_json::from_str(r#"{"key":"Zm9v","bogus":{"x":1}}"#).unwrap();
        assert_eq!(&put.key[..], b"foo");
    }

    /// Minimal `FileDescriptorSet` reader (file names only), to avoid pulling
    /// in `prost-types` just for a test.
    mod prost_types_lite {
        use prost::Message;

        #[derive(Clone, PartialEq, Message)]
        struct FileDescriptorProto {
            #[prost(string, tag = "1")]
            name: String,
        }

        #[derive(Clone, PartialEq, Message)]
        struct FileDescriptorSet {
            #[prost(message, repeated, tag = "1")]
            file: Vec<FileDescriptorProto>,
        }

        pub fn decode_file_names(buf: &[u8]) -> Vec<String> {
            FileDescriptorSet::decode(buf)
                .expect("valid FileDescriptorSet")
                .file
                .into_iter()
                .map(|f| f.name)
                .collect()
        }
    }
}
