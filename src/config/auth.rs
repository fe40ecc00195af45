//! The auth flags: --auth-token (simple, or jwt with its options),
//! --auth-token-ttl and --bcrypt-cost, checked as etcd checks them.

use std::time::Duration;

use oxetcd_server::auth::JwtConfig;

use super::error::ConfigError;
use super::go_values::parse_go_duration;
use super::values::Values;

/// bcrypt's bounds (Go's bcrypt.MinCost and MaxCost, which etcd checks).
const BCRYPT_COSTS: std::ops::RangeInclusive<u64> = 4..=31;

/// etcd's JWT TTL when the options name none.
const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

pub(super) struct AuthSettings {
    pub token_ttl: Duration,
    pub bcrypt_cost: u32,
    pub jwt: Option<JwtConfig>,
}

fn invalid(why: String) -> ConfigError {
    ConfigError::Invalid(format!("--auth-token: {why}"))
}

/// `jwt,pub-key=P,priv-key=K,sign-method=M,ttl=D` (etcd's options; the key
/// files are read here).
fn jwt(options: &str) -> Result<JwtConfig, ConfigError> {
    let (mut public, mut private, mut method, mut ttl) = (None, None, None, DEFAULT_JWT_TTL);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| invalid(format!("option {option:?} has no value")))?;
        match key {
            "pub-key" => public = Some(value.to_string()),
            "priv-key" => private = Some(value.to_string()),
            "sign-method" => method = Some(value.to_string()),
            "ttl" => {
                let nanos = parse_go_duration(value).map_err(|e| invalid(format!("ttl: {e}")))?;
                ttl = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
            }
            other => return Err(invalid(format!("unknown option {other:?}"))),
        }
    }
    let read = |path: &str| std::fs::read(path).map_err(|e| invalid(format!("{path}: {e}")));
    let public = public.ok_or_else(|| invalid("jwt needs pub-key".to_string()))?;
    Ok(JwtConfig {
        sign_method: method.ok_or_else(|| invalid("jwt needs sign-method".to_string()))?,
        public_key_pem: read(&public)?,
        private_key_pem: private.as_deref().map(read).transpose()?,
        ttl,
    })
}

pub(super) fn auth_settings(v: &Values) -> Result<AuthSettings, ConfigError> {
    let token = v.string("auth-token");
    let (kind, options) = token.split_once(',').unwrap_or((token.as_str(), ""));
    let jwt = match kind {
        "simple" => None,
        "jwt" => Some(jwt(options)?),
        other => return Err(invalid(format!("unknown token type {other:?}"))),
    };
    let token_ttl = Duration::from_secs(v.uint("auth-token-ttl", 64)?);
    let cost = v.uint("bcrypt-cost", 64)?;
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(ConfigError::Invalid(format!(
            "invalid bcrypt-cost: {cost} (must be between {} and {})",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        )));
    }
    Ok(AuthSettings {
        token_ttl,
        bcrypt_cost: cost as u32,
        jwt,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{cfg, err};
    use super::*;

    #[test]
    fn simple_tokens_by_default_with_etcds_ttl_and_cost() {
        let c = cfg(&[]);
        assert_eq!(
            (c.auth_token_ttl, c.bcrypt_cost, c.jwt),
            (Duration::from_secs(300), 10, None)
        );
        let c = cfg(&["--auth-token-ttl", "5", "--bcrypt-cost", "4"]);
        assert_eq!(
            (c.auth_token_ttl, c.bcrypt_cost),
            (Duration::from_secs(5), 4)
        );
        assert!(err(&["--bcrypt-cost", "3"]).contains("invalid bcrypt-cost"));
        assert!(err(&["--bcrypt-cost", "32"]).contains("invalid bcrypt-cost"));
        assert!(err(&["--auth-token", "opaque"]).contains("unknown token type"));
    }

    #[test]
    fn jwt_options_are_read_with_their_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let (public, private) = (dir.path().join("pub.pem"), dir.path().join("priv.pem"));
        std::fs::write(&public, "PUB").unwrap();
        std::fs::write(&private, "PRIV").unwrap();
        let option = format!(
            "jwt,pub-key={},priv-key={},sign-method=RS256,ttl=1s",
            public.display(),
            private.display()
        );
        let jwt = cfg(&["--auth-token", &option]).jwt.expect("jwt");
        assert_eq!(jwt.sign_method, "RS256");
        assert_eq!(jwt.public_key_pem, b"PUB");
        assert_eq!(jwt.private_key_pem.as_deref(), Some(&b"PRIV"[..]));
        assert_eq!(jwt.ttl, Duration::from_secs(1));
        assert!(
            err(&["--auth-token", "jwt,pub-key=/nonexistent,sign-method=RS256"])
                .contains("/nonexistent")
        );
        assert!(err(&["--auth-token", "jwt,sign-method=RS256"]).contains("pub-key"));
    }
}
