//! JWT tokens (etcd's `--auth-token=jwt,pub-key=...,priv-key=...,
//! sign-method=...,ttl=...`): signed claims `username`, `revision` (the auth
//! revision at sign time) and `exp`, checked with the public key by any
//! member, so nothing is kept per token. A token signed before any change of
//! users or roles is stale: requests with it get "revision of auth store is
//! old", as etcd's.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::EtcdError;

/// What --auth-token=jwt,... names, its key files read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtConfig {
    /// etcd's sign-method: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub sign_method: String,
    /// The public key, as PEM: a public key or a certificate holding it.
    pub public_key_pem: Vec<u8>,
    /// The private key, as PEM; None on a member that only checks tokens.
    pub private_key_pem: Option<Vec<u8>>,
    pub ttl: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

pub struct JwtTokens {
    algorithm: Algorithm,
    signing: Option<EncodingKey>,
    checking: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtTokens({:?})", self.algorithm)
    }
}

/// The key to check with: a public key PEM, or the key of a certificate
/// (etcd's own tests give a certificate as pub-key).
fn decoding_key(algorithm: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let rsa = matches!(
        algorithm,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    );
    let ec = matches!(algorithm, Algorithm::ES256 | Algorithm::ES384);
    let direct = if rsa {
        DecodingKey::from_rsa_pem(pem)
    } else if ec {
        DecodingKey::from_ec_pem(pem)
    } else {
        DecodingKey::from_ed_pem(pem)
    };
    if let Ok(key) = direct {
        return Ok(key);
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| format!("pub-key: not a PEM key or certificate: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("pub-key: bad certificate: {e}"))?;
    let key = &cert.public_key().subject_public_key.data;
    Ok(if rsa {
        DecodingKey::from_rsa_der(key)
    } else if ec {
        DecodingKey::from_ec_der(key)
    } else {
        DecodingKey::from_ed_der(key)
    })
}

impl JwtTokens {
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        let algorithm = Algorithm::from_str(&config.sign_method)
            .map_err(|_| format!("unknown sign-method {:?}", config.sign_method))?;
        let checking = decoding_key(algorithm, &config.public_key_pem)?;
        let signing = match &config.private_key_pem {
            None => None,
            Some(pem) => Some(
                match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                    _ => EncodingKey::from_rsa_pem(pem),
                }
                .map_err(|e| format!("priv-key: {e}"))?,
            ),
        };
        Ok(Self {
            algorithm,
            signing,
            checking,
            ttl: config.ttl,
        })
    }

    /// A token for `username` at auth revision `revision`, valid for the TTL.
    pub fn sign(&self, username: &str, revision: u64) -> Result<String, EtcdError> {
        let key = self.signing.as_ref().ok_or(EtcdError::AuthFailed)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp: (now + self.ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| EtcdError::Storage(format!("signing a JWT: {e}")))
    }

    /// The user and auth revision of a token this key signed and that has
    /// not expired; None for anything else (another key or algorithm,
    /// tampered claims, `alg: none`).
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.checking, &validation).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> (String, String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key.serialize_pem(), key.public_key_pem(), cert.pem())
    }

    fn tokens(public: &str, private: Option<&str>, ttl: Duration) -> JwtTokens {
        JwtTokens::new(&JwtConfig {
            sign_method: "ES256".into(),
            public_key_pem: public.as_bytes().to_vec(),
            private_key_pem: private.map(|p| p.as_bytes().to_vec()),
            ttl,
        })
        .unwrap()
    }

    #[test]
    fn a_signed_token_names_its_user_and_revision_with_a_key_or_a_certificate() {
        let (private, public, cert) = pki();
        let signer = tokens(&public, Some(&private), Duration::from_secs(60));
        let token = signer.sign("alice", 7).unwrap();
        assert_eq!(signer.verify(&token), Some(("alice".into(), 7)));
        let checker = tokens(&cert, None, Duration::from_secs(60));
        assert_eq!(checker.verify(&token), Some(("alice".into(), 7)));
        assert!(
            checker.sign("alice", 7).is_err(),
            "no private key, no token"
        );
    }

    #[test]
    fn forged_tampered_unsigned_and_expired_tokens_are_refused() {
        let (private, public, _) = pki();
        let (other_private, _, _) = pki();
        let signer = tokens(&public, Some(&private), Duration::from_secs(60));
        let forger = tokens(&public, Some(&other_private), Duration::from_secs(60));
        assert_eq!(signer.verify(&forger.sign("root", 1).unwrap()), None);

        let token = signer.sign("alice", 1).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
        let root_claims = b64.encode(claims.replace("alice", "root"));
        assert_eq!(
            signer.verify(&format!("{}.{root_claims}.{}", parts[0], parts[2])),
            None
        );
        let none = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(signer.verify(&format!("{none}.{}.", parts[1])), None);

        let short = tokens(&public, Some(&private), Duration::from_secs(0));
        let expired = short.sign("alice", 1).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(short.verify(&expired), None);
    }
}
