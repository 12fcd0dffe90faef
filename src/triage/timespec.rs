//! Time flags of `spyglass triage`: durations (`--watch 15m`, `--timeout 20s`) and the `--since`
//! cut-off (a duration back from now, or an RFC 3339 date).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

/// Parses a duration such as `90s`, `15m`, `48h`, `2d`, `1h30m` or `500ms`.
/// The longest duration accepted: 100 years.
const MAX_DURATION_SECS: f64 = 100.0 * 366.0 * 86_400.0;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write a number with a unit, e.g. `15m`, `48h` or `2d`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; write a number with a unit, e.g. `15m`, `48h` or `2d`"
            ));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| {
            format!(
                "`{text}` is not a duration: bad number `{}`",
                &rest[..digits]
            )
        })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => {
                return Err(format!(
                    "`{text}` has no unit; add one of ms, s, m, h, d, w (e.g. `{}s`)",
                    s
                ))
            }
            other => {
                return Err(format!(
                    "`{text}` has unknown unit `{other}`; use ms, s, m, h, d or w"
                ))
            }
        };
        // Bounded before any conversion: `Duration::from_secs_f64` panics past u64 seconds, and
        // a span past a century is a typo, not a feed interval or a look-back window.
        let part = number * seconds;
        if !part.is_finite() || part + total.as_secs_f64() > MAX_DURATION_SECS {
            return Err(format!(
                "`{text}` is longer than 100 years; write a shorter duration (e.g. `30d`)"
            ));
        }
        total += Duration::from_secs_f64(part);
    }
    Ok(total)
}

/// The `--since` cut-off: items published before it are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// A span back from the time of the run (`48h`).
    Ago(Duration),
    /// A fixed point in time (`2025-03-01T00:00:00Z` or `2025-03-01`).
    At(DateTime<Utc>),
}

impl Since {
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            // Saturates at the earliest time chrono represents rather than overflowing.
            Since::Ago(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            Since::At(t) => *t,
        }
    }
}

/// Parses `--since`: a duration (`48h`, `7d`), an RFC 3339 time or a date (midnight UTC).
pub fn parse_since(text: &str) -> Result<Since, String> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Since::At(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        return Ok(Since::At(t));
    }
    let duration_shaped = s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_alphabetic());
    parse_duration(s).map(Since::Ago).map_err(|why| {
        if duration_shaped {
            // `7x`, `1e99d`: the duration's own message says what is wrong with it.
            why
        } else {
            format!("`{text}` is neither a duration (e.g. `48h`, `7d`) nor an RFC 3339 date (e.g. `2025-03-01T00:00:00Z` or `2025-03-01`)")
        }
    })
}

/// A duration for messages: `15m`, `1h30m`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 && secs < 60 {
        return format!("{}s", (d.as_secs_f64() * 1000.0).round() / 1000.0);
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for text in [
            "99999999999999999d",
            "18446744073709551615s",
            "1e400s",
            "5300w",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_duration("5200w").is_ok());
        let far = Since::Ago(Duration::from_secs(u64::MAX));
        assert_eq!(far.cutoff(Utc::now()), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn parses_durations_with_units_and_combinations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("48h").unwrap(),
            Duration::from_secs(48 * 3600)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("15").unwrap_err().contains("no unit"));
        assert!(parse_duration("15x")
            .unwrap_err()
            .contains("unknown unit `x`"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn parses_since_as_duration_or_date() {
        assert_eq!(
            parse_since("48h").unwrap(),
            Since::Ago(Duration::from_secs(48 * 3600))
        );
        let at = parse_since("2025-03-01T12:00:00+02:00").unwrap();
        assert_eq!(at, Since::At("2025-03-01T10:00:00Z".parse().unwrap()));
        assert_eq!(
            parse_since("2025-03-01").unwrap(),
            Since::At("2025-03-01T00:00:00Z".parse().unwrap())
        );
        let now: DateTime<Utc> = "2025-03-03T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("2d").unwrap().cutoff(now),
            "2025-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn formats_durations_compactly() {
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    }
}
