//! Go's value syntax as etcd's flag package reads it (strconv.ParseBool,
//! strconv.ParseUint/ParseInt with base 0, time.ParseDuration), with the
//! flag package's error words ("parse error", "value out of range").

pub(super) fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("parse error".into()),
    }
}

/// strconv.ParseUint(s, 0, bits): 0x/0o/0b prefixes, a leading 0 for octal.
pub(super) fn parse_go_uint(s: &str, bits: u32) -> Result<u64, String> {
    let syntax = || "parse error".to_string();
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    let (digits, radix, prefix) = match lower.as_deref() {
        Some("0x") => (&s[2..], 16, true),
        Some("0o") => (&s[2..], 8, true),
        Some("0b") => (&s[2..], 2, true),
        _ if s.len() > 1 && s.starts_with('0') => (&s[1..], 8, false),
        _ => (s, 10, false),
    };
    if s.is_empty() || digits.is_empty() {
        return Err(syntax());
    }
    // Underscores only between digits, or right after a base prefix.
    let leading_zero = radix == 8 && !prefix;
    if (digits.starts_with('_') && !prefix && !leading_zero)
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(syntax());
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or_else(syntax)?;
        n = n
            .checked_mul(u64::from(radix))
            .and_then(|n| n.checked_add(u64::from(d)))
            .filter(|n| *n <= max)
            .ok_or_else(|| "value out of range".to_string())?;
    }
    Ok(n)
}

/// strconv.ParseInt(s, 0, bits).
pub(super) fn parse_go_int(s: &str, bits: u32) -> Result<i64, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(body, 64)?;
    let limit = 1u64 << (bits.clamp(1, 64) - 1);
    let out_of_range = || "value out of range".to_string();
    if neg {
        if magnitude > limit {
            return Err(out_of_range());
        }
        Ok(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        if magnitude >= limit {
            return Err(out_of_range());
        }
        i64::try_from(magnitude).map_err(|_| out_of_range())
    }
}

/// time.ParseDuration, in nanoseconds.
pub(super) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let err = || "parse error".to_string();
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        rest = after;
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_dot.len());
            (frac_part, rest) = after_dot.split_at(end);
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_end);
        rest = after;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        total = whole
            .checked_mul(scale)
            .and_then(|w| total.checked_add(w))
            .ok_or_else(err)?;
        // Digits beyond nanosecond precision do not matter.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| err())?;
            total += frac * scale / 10u128.pow(frac_digits.len() as u32);
        }
        if total > i64::MAX as u128 {
            return Err("value out of range".into());
        }
    }
    let total = total as i128;
    Ok(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_value_syntax() {
        assert_eq!(parse_go_uint("0x10", 64), Ok(16));
        assert_eq!(parse_go_uint("010", 64), Ok(8));
        assert_eq!(parse_go_uint("0", 64), Ok(0));
        assert_eq!(parse_go_uint("1_000", 64), Ok(1000));
        assert!(parse_go_uint("", 64).is_err());
        assert!(parse_go_uint("-1", 64).is_err());
        assert!(parse_go_uint("09", 64).is_err());
        assert!(parse_go_uint("0x", 64).is_err());
        assert!(parse_go_uint("0o", 64).is_err());
        assert_eq!(parse_go_uint("0o17", 64), Ok(15));
        assert_eq!(parse_go_uint("0B101", 64), Ok(5));
        assert_eq!(parse_go_uint("4294967295", 32), Ok(u64::from(u32::MAX)));
        assert!(parse_go_uint("4294967296", 32).is_err());
        assert_eq!(parse_go_int("-5", 64), Ok(-5));
        assert_eq!(parse_go_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert!(parse_go_int("9223372036854775808", 64).is_err());
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_go_duration("-2us"), Ok(-2_000));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("s").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
