//! Go-style duration strings (`1h30m20s`, `500ms`, `-1.5s`): parsing for every API that
//! accepts a delay, and Go's `Duration.String()` formatting for the gorooster surface,
//! whose clients parse those strings back with Go's `time.ParseDuration`.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const NS: i128 = 1;
const US: i128 = 1_000;
const MS: i128 = 1_000_000;
const S: i128 = 1_000_000_000;
const M: i128 = 60 * S;
const H: i128 = 60 * M;

/// Parses a Go duration into signed nanoseconds. Accepts exactly what Go's
/// `time.ParseDuration` accepts (units ns, us, µs, μs, ms, s, m, h; fractions; a sign).
pub fn parse_go_duration(input: &str) -> Result<i128, DurationError> {
    let err = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    let mut s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err("no number"));
    }
    let mut total: i128 = 0;
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
            return Err(err("expected a number"));
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map(|(i, _)| i)
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale = match unit {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            "" => return Err(err("missing unit (use ns, us, ms, s, m or h)")),
            _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err("number too large"))?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(|| err("overflow"))?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: i128 = digits.parse().map_err(|_| err("bad fraction"))?;
            value += frac * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(|| err("overflow"))?;
        if total > i64::MAX as i128 {
            return Err(err("overflow"));
        }
    }
    Ok(if negative { -total } else { total })
}

/// Parses a Go duration and rounds it to whole milliseconds (Herald's time resolution).
pub fn parse_millis(input: &str) -> Result<i64, DurationError> {
    let ns = parse_go_duration(input)?;
    Ok((ns / MS) as i64)
}

/// Formats nanoseconds exactly as Go's `time.Duration.String()` does.
pub fn format_go_duration(ns: i128) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let negative = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < S as u128 {
        // Sub-second values use the largest unit that keeps a leading non-zero digit.
        let (unit, scale) = if u < US as u128 {
            ("ns", 1u128)
        } else if u < MS as u128 {
            ("µs", US as u128)
        } else {
            ("ms", MS as u128)
        };
        out.push_str(&fmt_frac(u, scale));
        out.push_str(unit);
    } else {
        let hours = u / H as u128;
        let rem = u % H as u128;
        let minutes = rem / M as u128;
        let secs_ns = rem % M as u128;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&fmt_frac(secs_ns, S as u128));
        out.push('s');
    }
    if negative {
        format!("-{out}")
    } else {
        out
    }
}

/// Formats milliseconds as a Go duration string.
pub fn format_millis(ms: i64) -> String {
    format_go_duration(ms as i128 * MS)
}

fn fmt_frac(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = (scale as f64).log10().round() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_examples() {
        assert_eq!(parse_go_duration("1h30m20s").unwrap(), H + 30 * M + 20 * S);
        assert_eq!(parse_go_duration("500ms").unwrap(), 500 * MS);
        assert_eq!(parse_go_duration("-5s").unwrap(), -5 * S);
        assert_eq!(parse_go_duration("1.5s").unwrap(), 1500 * MS);
        assert_eq!(parse_go_duration(".5m").unwrap(), 30 * S);
        assert_eq!(parse_go_duration("10h0s").unwrap(), 10 * H);
        assert_eq!(parse_go_duration("2µs").unwrap(), 2 * US);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(parse_millis("3m50s").unwrap(), 230_000);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "1", "h", "1x", "1.s.", "--1s", "1h 30m", "99999999999h"] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(0), "0s");
        assert_eq!(format_go_duration(10 * H), "10h0m0s");
        assert_eq!(format_go_duration(9 * H + 59 * M + 58 * S), "9h59m58s");
        assert_eq!(format_go_duration(M), "1m0s");
        assert_eq!(format_go_duration(1500 * MS), "1.5s");
        assert_eq!(format_go_duration(500 * MS), "500ms");
        assert_eq!(format_go_duration(1500 * US), "1.5ms");
        assert_eq!(format_go_duration(-90 * S), "-1m30s");
        assert_eq!(format_go_duration(7), "7ns");
    }

    #[test]
    fn round_trips() {
        for s in ["1h30m20s", "3m50s", "1.25s", "750ms", "26h0m1s"] {
            assert_eq!(format_go_duration(parse_go_duration(s).unwrap()), s);
        }
    }
}
