//! kube-apiserver's continue token: base64url (no padding) of
//! `{"v":"meta.k8s.io/v1","rv":R,"start":S}`, S being the next key with the
//! list's prefix stripped (last key + "\0").

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

pub fn encode(revision: i64, start: &str) -> String {
    let t = Token {
        v: "meta.k8s.io/v1".into(),
        rv: revision,
        start: start.into(),
    };
    // A struct of strings and an integer always serializes.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// (revision, start key relative to the list prefix). rv -1 = continue at
/// the latest revision.
pub fn decode(token: &str) -> Result<(i64, String), ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("invalid continue token: {why}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad("not base64"))?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad("unknown version"));
    }
    if t.rv == 0 || t.rv < -1 {
        return Err(bad(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if t.start.is_empty() || t.start.starts_with('/') || t.start.split('/').any(|p| p == "..") {
        return Err(bad("unclean start key"));
    }
    Ok((t.rv, t.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_kube_apiservers_encoding() {
        let t = encode(12, "default/pod-9\u{0}");
        assert_eq!(decode(&t).unwrap(), (12, "default/pod-9\u{0}".to_string()));
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(&t).unwrap()).unwrap();
        assert_eq!(
            raw,
            r#"{"v":"meta.k8s.io/v1","rv":12,"start":"default/pod-9\u0000"}"#
        );
    }

    #[test]
    fn rejects_foreign_or_unclean_tokens() {
        assert_eq!(decode("!!").unwrap_err().code(), 400);
        assert!(decode(&encode(0, "a")).is_err());
        assert!(decode(&encode(5, "")).is_err());
        assert!(decode(&encode(5, "../x")).is_err());
        let other = URL_SAFE_NO_PAD.encode(br#"{"v":"x","rv":3,"start":"a"}"#);
        assert!(decode(&other).is_err());
    }
}
