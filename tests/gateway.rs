//! etcd's JSON gateway on the client port: the v3 API as JSON over HTTP/1.1,
//! spoken with a plain TCP client as curl would.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use support::Server;

/// How long a test waits for a line of a streamed answer.
const STREAM_WAIT: Duration = Duration::from_secs(10);

/// Sends `POST path` with `body`; the connection is left open for streams.
fn send(endpoint: &str, method: &str, path: &str, body: &str) -> TcpStream {
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    conn
}

/// A whole answer: status code, and the body (unchunked).
fn call(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut conn = send(endpoint, method, path, body);
    conn.set_read_timeout(Some(STREAM_WAIT)).expect("timeout");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// A chunked body's data (etcd chunks its error answers, with trailers).
fn dechunk(mut raw: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        raw = rest[size..].trim_start_matches("\r\n");
    }
    body
}

/// POST with a JSON body; the answer's status and JSON.
fn post(endpoint: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = call(endpoint, "POST", path, &body.to_string());
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, value)
}

/// The JSON lines of a streamed answer, read as they come. Chunk-size lines
/// are hex digits, so every line that opens an object is a message.
struct Lines(BufReader<TcpStream>);

impl Lines {
    fn open(endpoint: &str, path: &str, body: &str) -> (u16, Lines) {
        let conn = send(endpoint, "POST", path, body);
        conn.set_read_timeout(Some(STREAM_WAIT)).expect("timeout");
        let mut reader = BufReader::new(conn);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        (status, Lines(reader))
    }

    fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self
                .0
                .read_line(&mut line)
                .expect("a streamed line in time");
            assert!(n > 0, "the stream ended");
            let line = line.trim();
            if line.starts_with('{') {
                return serde_json::from_str(line).expect("a JSON line");
            }
        }
    }
}

fn b64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
    }
    out
}

#[test]
fn put_and_range_speak_protobufs_json_mapping() {
    let server = Server::start();
    let ep = server.endpoint();
    assert_eq!(b64("bar"), "YmFy");

    let (status, put) = post(
        &ep,
        "/v3/kv/put",
        json!({"key": b64("foo"), "value": b64("bar")}),
    );
    assert_eq!(status, 200, "{put}");
    // 64-bit integers are strings, names are the proto's.
    let revision = put["header"]["revision"].as_str().expect("revision string");
    assert!(put["header"]["cluster_id"].is_string() && put["header"]["raft_term"].is_string());

    // Go's json.Marshal sends 64-bit integers as numbers; /v3beta is /v3.
    let (status, range) = post(
        &ep,
        "/v3beta/kv/range",
        json!({"key": b64("foo"), "limit": 1}),
    );
    assert_eq!(status, 200, "{range}");
    assert_eq!(range["count"], "1");
    assert_eq!(
        range["kvs"][0],
        json!({"key": "Zm9v", "create_revision": revision, "mod_revision": revision,
               "version": "1", "value": "YmFy"})
    );
    // lowerCamelCase names are accepted; default values are left out.
    let (_, keys) = post(
        &ep,
        "/v3/kv/range",
        json!({"key": b64("foo"), "keysOnly": true}),
    );
    assert_eq!(keys["kvs"][0].get("value"), None);
    assert_eq!(keys.get("more"), None);

    let (status, deleted) = post(
        &ep,
        "/v3/kv/deleterange",
        json!({"key": b64("foo"), "prev_kv": true}),
    );
    assert_eq!(status, 200);
    assert_eq!(deleted["deleted"], "1");
    assert_eq!(deleted["prev_kvs"][0]["value"], "YmFy");
}

#[test]
fn txn_answers_with_its_responses_and_refuses_malformed_compares() {
    let server = Server::start();
    let ep = server.endpoint();
    let txn = json!({
        "compare": [{"key": b64("t"), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": b64("t"), "value": b64("1")}}],
    });
    let (status, first) = post(&ep, "/v3/kv/txn", txn.clone());
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["succeeded"], true);
    let revision = &first["header"]["revision"];
    assert_eq!(
        first["responses"],
        json!([{"response_put": {"header": {"revision": revision}}}])
    );
    // The key exists now: the compare fails and `succeeded: false` is omitted.
    let (_, second) = post(&ep, "/v3/kv/txn", txn);
    assert_eq!(second.get("succeeded"), None);

    // etcd's e2e "malformed" txn (Go's json.Marshal of oneof wrappers, which
    // the gateway ignores): a compare without a target value.
    let (status, error) = call(
        &ep,
        "POST",
        "/v3/kv/txn",
        r#"{"compare":[{"result":0,"target":1,"key":"Zm9v","TargetUnion":null}],"success":[{"Request":{"RequestPut":{"key":"Zm9v","value":"YmFy"}}}]}"#,
    );
    assert_eq!(status, 400, "{error}");
    assert!(error.contains(r#""code":3"#), "{error}");
}

#[test]
fn errors_are_json_with_grpc_gateways_status_codes() {
    let server = Server::start();
    let ep = server.endpoint();

    // Not JSON: the gateway's own InvalidArgument.
    let (status, body) = call(&ep, "POST", "/v3/kv/range", r#"{"key":"Zm9v","#);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"error":"unexpected EOF","message":"unexpected EOF","code":3}"#
    );
    // The service's errors, mapped as etcd 3.4 maps them.
    let (status, body) = post(&ep, "/v3/kv/range", json!({}));
    assert_eq!((status, &body["code"]), (400, &json!(3)), "{body}");
    assert_eq!(body["error"], "etcdserver: key is not provided");
    let (status, body) = post(&ep, "/v3/kv/compaction", json!({"revision": "300"}));
    assert_eq!((status, &body["code"]), (400, &json!(11)), "{body}");
    let (status, body) = post(&ep, "/v3/lease/revoke", json!({"ID": 99}));
    assert_eq!((status, &body["code"]), (404, &json!(5)), "{body}");
    assert_eq!(body["message"], "etcdserver: requested lease not found");
    let (status, body) = call(&ep, "POST", "/v3/election/resign", "{}");
    assert_eq!(status, 500);
    assert_eq!(
        body,
        r#"{"error":"\"leader\" field must be provided","message":"\"leader\" field must be provided","code":2}"#
    );
    // FailedPrecondition is 412, as etcd 3.4's gateway maps it.
    let (status, body) = post(
        &ep,
        "/v3/auth/authenticate",
        json!({"name": "x", "password": "y"}),
    );
    assert_eq!((status, &body["code"]), (412, &json!(9)), "{body}");
    assert_eq!(body["error"], "etcdserver: authentication is not enabled");

    // Paths and methods the gateway does not have.
    assert_eq!(call(&ep, "POST", "/v3/no/such", "{}").0, 404);
    assert_eq!(call(&ep, "GET", "/v3/kv/range", "").0, 405);
}

#[test]
fn watch_streams_events_as_json_lines() {
    let server = Server::start();
    let ep = server.endpoint();
    let create = json!({"create_request": {"key": b64("w"), "start_revision": 1}});
    // Two messages in one body: a create and a progress request.
    let body = format!("{create}\n{}", json!({"progress_request": {}}));
    let (status, mut lines) = Lines::open(&ep, "/v3/watch", &body);
    assert_eq!(status, 200);
    let created = lines.next();
    assert_eq!(created["result"]["created"], true, "{created}");
    let progress = lines.next();
    assert_eq!(progress["result"]["watch_id"], "-1", "{progress}");

    let (_, put) = post(
        &ep,
        "/v3/kv/put",
        json!({"key": b64("w"), "value": b64("v")}),
    );
    let event = lines.next();
    assert_eq!(
        event["result"]["events"][0]["kv"]["value"], "dg==",
        "{event}"
    );
    assert_eq!(
        event["result"]["events"][0]["kv"]["mod_revision"],
        put["header"]["revision"]
    );
    // PUT is the default event type, so it is left out.
    assert_eq!(event["result"]["events"][0].get("type"), None);

    let (_, _) = post(&ep, "/v3/kv/deleterange", json!({"key": b64("w")}));
    let event = lines.next();
    assert_eq!(event["result"]["events"][0]["type"], "DELETE", "{event}");

    // A body that does not start with a message is refused before the call.
    let (status, body) = call(&ep, "POST", "/v3/watch", r#"{"create_request":{"key":1}}"#);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains(r#""code":2"#), "{body}");
}

#[test]
fn leases_grant_keep_alive_and_revoke() {
    let server = Server::start();
    let ep = server.endpoint();
    let (status, grant) = post(&ep, "/v3/lease/grant", json!({"ID": 1234, "TTL": 60}));
    assert_eq!(status, 200, "{grant}");
    assert_eq!(
        (&grant["ID"], &grant["TTL"]),
        (&json!("1234"), &json!("60"))
    );
    let (_, again) = post(&ep, "/v3/lease/grant", json!({"ID": 1234, "TTL": 60}));
    assert_eq!(again["code"], 9, "{again}");

    post(
        &ep,
        "/v3/kv/put",
        json!({"key": b64("leased"), "value": b64("x"), "lease": 1234}),
    );
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let (_, ttl) = post(&ep, path, json!({"ID": 1234, "keys": true}));
        assert_eq!(ttl["grantedTTL"], "60", "{ttl}");
        assert_eq!(ttl["keys"], json!([b64("leased")]));
    }
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let (_, leases) = post(&ep, path, json!({}));
        assert_eq!(leases["leases"], json!([{"ID": "1234"}]), "{leases}");
    }

    let (status, mut lines) = Lines::open(&ep, "/v3/lease/keepalive", r#"{"ID":1234}"#);
    assert_eq!(status, 200);
    let renewed = lines.next();
    assert_eq!(renewed["result"]["ID"], "1234", "{renewed}");
    assert_eq!(renewed["result"]["TTL"], "60");

    let (status, _) = post(&ep, "/v3/lease/revoke", json!({"ID": 1234}));
    assert_eq!(status, 200);
    let (status, gone) = post(&ep, "/v3/kv/lease/revoke", json!({"ID": 1234}));
    assert_eq!(status, 404, "{gone}");
}

#[test]
fn calls_beyond_max_concurrent_streams_wait_for_a_place() {
    let server = Server::start_with(&["--max-concurrent-streams", "1"]);
    let ep = server.endpoint();
    // The watch holds the only place while it is open.
    let (_, mut watch) = Lines::open(&ep, "/v3/watch", r#"{"create_request":{"key":"eA=="}}"#);
    assert_eq!(watch.next()["result"]["created"], true);

    let mut range = send(&ep, "POST", "/v3/kv/range", r#"{"key":"eA=="}"#);
    range
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut first = [0u8; 1];
    let waited = range.read(&mut first);
    assert!(
        waited.is_err(),
        "the range was answered while the watch held the place"
    );

    // Closing the watch frees the place: the range is answered.
    drop(watch);
    range.set_read_timeout(Some(STREAM_WAIT)).expect("timeout");
    let mut answer = String::new();
    range.read_to_string(&mut answer).expect("the range answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
