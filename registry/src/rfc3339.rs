//! UTC timestamps as RFC 3339 text (`2026-12-02T01:46:55.123Z`), written by
//! the audit log and the events, and read back by `registry audit --since`.
//! Written with a fixed width, so that such texts sort as their times do.

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`) or a bare `YYYY-MM-DD`, as
/// milliseconds since the epoch.
pub fn parse_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| -> Option<i64> {
        let t = s.get(a..b)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") || !(1..=12).contains(&m) {
        return None;
    }
    let day = days_from_civil(y, m, d) * 86_400_000;
    if s.len() == 10 {
        return Some(day);
    }
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let rest = s.get(19..)?;
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            let digits = format!("{:0<3}", &r[..n]);
            (digits[..3].parse::<i64>().ok()?, &r[n..])
        }
        None => (0, rest),
    };
    if !matches!(zone, "Z" | "z" | "+00:00") {
        return None;
    }
    Some(day + ((hh * 60 + mm) * 60 + ss) * 1000 + frac)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:59.5Z, a leap day.
        let t = 1_709_251_199_500;
        assert_eq!(format_ms(t), "2024-02-29T23:59:59.500Z");
        assert_eq!(parse_ms("2024-02-29T23:59:59.5Z"), Some(t));
        assert_eq!(parse_ms("2024-02-29T23:59:59.500+00:00"), Some(t));
        assert_eq!(parse_ms("2024-03-01"), Some(t + 500));
        assert_eq!(parse_ms("2024-13-01"), None);
        assert_eq!(parse_ms("yesterday"), None);
    }
}
