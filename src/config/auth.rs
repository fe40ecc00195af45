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
