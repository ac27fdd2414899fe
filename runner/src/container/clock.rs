//! Times as containers show them: RFC 3339 (`inspect`, `logs -t`), Docker's
//! human durations (`Up 3 seconds`, `2 minutes ago`), and the `--since`
//! forms `logs` accepts. Times are Unix nanoseconds or milliseconds; no
//! time zone but UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix nanoseconds.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-01T16:40:00.123456789Z` for Unix nanoseconds.
pub fn rfc3339_ns(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// RFC 3339 for Unix milliseconds; 0 (never) is Docker's zero time.
pub fn rfc3339_ms(ms: u64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    rfc3339_ns(u128::from(ms) * 1_000_000)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac]Z` (or with `+00:00`) into Unix nanoseconds.
pub fn parse_rfc3339(text: &str) -> Option<u128> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, mo, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, mi, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let frac_ns: u128 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u128>().ok()? * 10u128.pow(9 - digits.len() as u32)
    };
    let days = days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(u128::try_from(secs).ok()? * 1_000_000_000 + frac_ns)
}

/// `--since`: an RFC 3339 time, Unix seconds (`1700000000[.5]`), or a
/// duration before now (`10s`, `5m`, `2h`, `1h30m`). Unix nanoseconds.
pub fn parse_since(text: &str, now: u128) -> Option<u128> {
    if let Some(t) = parse_rfc3339(text) {
        return Some(t);
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs >= 0.0).then_some((secs * 1e9) as u128);
    }
    let mut total: u128 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u128 = number.parse().ok()?;
        number.clear();
        let unit: u128 = match c {
            's' => 1_000_000_000,
            'm' => 60_000_000_000,
            'h' => 3_600_000_000_000,
            _ => return None,
        };
        total += n * unit;
    }
    if !number.is_empty() || total == 0 {
        return None;
    }
    Some(now.saturating_sub(total))
}

/// Docker's human duration (`Less than a second`, `3 seconds`, `About a
/// minute`, `5 minutes`, `About an hour`, `3 hours`, `2 days`, `3 weeks`, `4 months`).
pub fn human(ms: u64) -> String {
    let secs = ms / 1000;
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match secs {
        0 => "Less than a second".into(),
        1..=59 => plural(secs, "second"),
        60..=119 => "About a minute".into(),
        120..=3599 => plural(secs / 60, "minute"),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => plural(secs / 3600, "hour"),
        172_800..=1_209_599 => plural(secs / 86_400, "day"),
        1_209_600..=5_183_999 => plural(secs / 604_800, "week"),
        5_184_000..=63_071_999 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = 1_764_607_200_123_456_789u128;
        let text = rfc3339_ns(t);
        assert_eq!(text, "2025-12-01T16:40:00.123456789Z");
        assert_eq!(parse_rfc3339(&text), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(rfc3339_ms(0), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn since_takes_durations_and_unix_seconds() {
        let now = 100_000_000_000_000;
        assert_eq!(parse_since("10s", now), Some(now - 10_000_000_000));
        assert_eq!(parse_since("1m30s", now), Some(now - 90_000_000_000));
        assert_eq!(parse_since("5", now), Some(5_000_000_000));
        assert_eq!(parse_since("soon", now), None);
    }

    #[test]
    fn human_durations_read_like_dockers() {
        assert_eq!(human(300), "Less than a second");
        assert_eq!(human(1000), "1 second");
        assert_eq!(human(3000), "3 seconds");
        assert_eq!(human(90_000), "About a minute");
        assert_eq!(human(150_000), "2 minutes");
        assert_eq!(human(3 * 3_600_000), "3 hours");
    }
}
