//! Parsing and formatting of durations and timestamps for the command line and logs.

use anyhow::{bail, Context};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses a human duration such as `90s`, `15m`, `24h` or `1h 30m` into whole seconds.
pub fn parse_duration_secs(text: &str) -> anyhow::Result<u64> {
    let duration = humantime::parse_duration(text.trim()).with_context(|| {
        format!("invalid duration \"{text}\": write a number with a unit, such as 90s, 15m or 24h")
    })?;
    if duration.subsec_nanos() != 0 {
        bail!("invalid duration \"{text}\": use whole seconds");
    }
    Ok(duration.as_secs())
}

/// Formats whole seconds as a human duration such as `1h 25m 48s`; `0s` for zero. Days are
/// written as hours (`24h`, not `1day`), as rollout windows usually are.
pub fn format_duration_secs(secs: u64) -> String {
    let (hours, minutes, seconds) = (secs / 3_600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if seconds > 0 || parts.is_empty() {
        parts.push(format!("{seconds}s"));
    }
    parts.join(" ")
}

/// Parses a timestamp given as RFC 3339 (`2025-12-04T00:00:00Z`) or as Unix seconds.
pub fn parse_timestamp(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return trimmed
            .parse()
            .with_context(|| format!("invalid timestamp \"{text}\": too large for Unix seconds"));
    }

    let parsed = OffsetDateTime::parse(trimmed, &Rfc3339).with_context(|| {
        format!("invalid timestamp \"{text}\": use RFC 3339 (2025-12-04T00:00:00Z) or Unix seconds")
    })?;
    let unix = parsed.unix_timestamp();
    if unix < 0 {
        bail!("invalid timestamp \"{text}\": it is before 1970-01-01T00:00:00Z");
    }
    Ok(unix as u64)
}

/// Formats Unix seconds as RFC 3339 in UTC, such as `2025-12-04T07:35:48Z`.
pub fn format_timestamp(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|moment| moment.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix_secs}"))
}

/// Returns the wall-clock time in whole seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_forms() {
        assert_eq!(parse_duration_secs("90s").unwrap(), 90);
        assert_eq!(parse_duration_secs("15m").unwrap(), 900);
        assert_eq!(parse_duration_secs("24h").unwrap(), 86_400);
        assert_eq!(parse_duration_secs("1000000s").unwrap(), 1_000_000);
        assert_eq!(parse_duration_secs("1h 30m").unwrap(), 5_400);
    }

    #[test]
    fn duration_rejects_missing_unit() {
        let message = parse_duration_secs("24").unwrap_err().to_string();
        assert!(message.contains("invalid duration \"24\""), "{message}");
    }

    #[test]
    fn duration_formats_in_hours() {
        assert_eq!(format_duration_secs(0), "0s");
        assert_eq!(format_duration_secs(86_400), "24h");
        assert_eq!(format_duration_secs(5_148), "1h 25m 48s");
        assert_eq!(format_duration_secs(120), "2m");
        assert_eq!(format_duration_secs(1_000_000), "277h 46m 40s");
    }

    #[test]
    fn timestamp_forms() {
        assert_eq!(parse_timestamp("1764806400").unwrap(), 1_764_806_400);
        assert_eq!(
            parse_timestamp("2025-12-04T00:00:00Z").unwrap(),
            1_764_806_400
        );
        assert_eq!(
            parse_timestamp("2025-12-04T02:00:00+02:00").unwrap(),
            1_764_806_400
        );
    }

    #[test]
    fn timestamp_rejects_garbage() {
        let message = parse_timestamp("yesterday").unwrap_err().to_string();
        assert!(message.contains("\"yesterday\""), "{message}");
    }

    #[test]
    fn timestamp_formats_utc() {
        assert_eq!(format_timestamp(1_764_806_400), "2025-12-04T00:00:00Z");
    }
}
