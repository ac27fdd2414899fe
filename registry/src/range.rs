//! Parsing of the `Range` header (blob reads) and `Content-Range` header (upload chunks).

use std::ops::Range;

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// Resolve `Range: bytes=a-b | a- | -n` against a blob of `size` bytes.
/// Multiple ranges and other units are not served.
pub fn parse_range(header: &str, size: u64) -> Result<Range<u64>, Unsatisfiable> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?;
    let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
    let num = |s: &str| -> Result<u64, Unsatisfiable> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Unsatisfiable);
        }
        s.parse().map_err(|_| Unsatisfiable)
    };
    let range = if a.is_empty() {
        let n = num(b)?;
        if n == 0 {
            return Err(Unsatisfiable);
        }
        size.saturating_sub(n)..size
    } else {
        let start = num(a)?;
        let end = if b.is_empty() {
            size
        } else {
            num(b)?.saturating_add(1).min(size)
        };
        if start >= size || end <= start {
            return Err(Unsatisfiable);
        }
        start..end
    };
    if range.is_empty() {
        return Err(Unsatisfiable);
    }
    Ok(range)
}

/// Parse an upload chunk's `Content-Range: <start>-<end>` (inclusive end; an
/// optional `bytes ` or `bytes=` prefix and `/total` suffix are tolerated).
/// Returns the start offset and the chunk length.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 19 && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    if end < start || end >= i64::MAX as u64 {
        return None;
    }
    Some((start, end - start + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=500-1499", 2000), Ok(500..1500));
        assert_eq!(parse_range("bytes=500-", 2000), Ok(500..2000));
        assert_eq!(parse_range("bytes=-500", 2000), Ok(1500..2000));
        assert_eq!(parse_range("bytes=0-99999", 10), Ok(0..10));
        assert_eq!(parse_range("bytes=-99999", 10), Ok(0..10));
        for bad in [
            "bytes=2000-",
            "bytes=5-4",
            "bytes=-0",
            "items=1-2",
            "bytes=1-2,4-5",
            "bytes=x-1",
            "bytes=-",
        ] {
            assert_eq!(parse_range(bad, 2000), Err(Unsatisfiable), "{bad}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), Err(Unsatisfiable));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 100)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Some((100, 100)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 1)));
        for bad in [
            "",
            "5-4",
            "-1",
            "a-b",
            "1-",
            "99999999999999999999-99999999999999999999",
            "0-9223372036854775807",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
