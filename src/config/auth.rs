//! The auth flags: --auth-token (its token type), --auth-token-ttl and
//! --bcrypt-cost, checked as etcd checks them.

use std::time::Duration;

use super::error::ConfigError;
use super::values::Values;

/// bcrypt's bounds (Go's bcrypt.MinCost and MaxCost, which etcd checks).
const BCRYPT_COSTS: std::ops::RangeInclusive<u64> = 4..=31;

/// The simple tokens' TTL and the bcrypt cost. Only simple tokens are
/// served: --auth-token=jwt,... is refused rather than served as simple
/// tokens.
pub(super) fn auth_settings(v: &Values) -> Result<(Duration, u32), ConfigError> {
    let token = v.string("auth-token");
    let kind = token.split(',').next().unwrap_or_default();
    if kind != "simple" {
        return Err(ConfigError::Unsupported {
            flag: format!("--auth-token={token}"),
            reason: "only simple tokens are served".to_string(),
        });
    }
    let ttl = Duration::from_secs(v.uint("auth-token-ttl", 64)?);
    let cost = v.uint("bcrypt-cost", 64)?;
    if !BCRYPT_COSTS.contains(&cost) {
        return Err(ConfigError::Invalid(format!(
            "invalid bcrypt-cost: {cost} (must be between {} and {})",
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        )));
    }
    Ok((ttl, cost as u32))
}
