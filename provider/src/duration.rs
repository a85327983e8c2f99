//! Go's duration syntax (`"300ms"`, `"1.5h"`, `"2h45m"`), which Terraform users know from
//! `timeouts` blocks. Parsed exactly as Go's `time.ParseDuration`, negative durations refused.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: use a number and a unit, like \"30s\", \"5m\" or \"1h30m\" (units: ns, us, ms, s, m, h)"
)]
pub struct DurationError(pub String);

pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = || DurationError(text.to_string());
    let mut s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(fail());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(fail());
    }
    let mut total_nanos: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(s.len(), |(i, _)| i);
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(fail()),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| fail())?
        };
        let mut nanos = int.checked_mul(per_unit).ok_or_else(fail)?;
        if !frac_part.is_empty() {
            // Enough digits for nanosecond precision of an hour; the rest cannot matter.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| fail())?;
            nanos += frac * per_unit / 10u128.pow(digits.len() as u32);
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(fail)?;
    }
    // Go's limit is the largest i64 nanoseconds (~292 years).
    if total_nanos > i64::MAX as u128 {
        return Err(fail());
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats like Go's `Duration.String` for whole seconds and above (`"1h30m0s"`, `"2s"`, `"1.5s"`).
pub fn format(d: Duration) -> String {
    let total = d.as_secs();
    let nanos = d.subsec_nanos();
    if total == 0 && nanos == 0 {
        return "0s".into();
    }
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if nanos == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let frac = format!("{nanos:09}");
        out.push_str(&format!("{s}.{}s", frac.trim_end_matches('0')));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let cases = [
            ("0", 0),
            ("30s", 30_000),
            ("1.5h", 5_400_000),
            ("2h45m", 9_900_000),
            ("300ms", 300),
            ("1m30.5s", 90_500),
            (".5s", 500),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
        for bad in [
            "",
            "5",
            "-5s",
            "5 s",
            "5d",
            "s",
            "1.s.",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::from_secs(2)), "2s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(120)), "2m0s");
    }
}
