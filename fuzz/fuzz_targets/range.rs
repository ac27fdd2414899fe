//! Fuzzes the registry's `Range` (blob reads) and `Content-Range` (upload
//! chunks) parsers.
//!
//! The input is an 8-byte little-endian blob size followed by the header text.
//! - A served `Range` is non-empty and lies inside the blob, and a plain
//!   `bytes=a-b` inside the blob is served exactly as asked.
//! - A `Content-Range` chunk is non-empty, its end fits the i64 offsets the
//!   store keeps, and its canonical `start-end` form parses to the same chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::range::{parse_content_range, parse_range};

fuzz_target!(|data: &[u8]| {
    let Some((size, text)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    let Ok(header) = std::str::from_utf8(text) else {
        return;
    };

    if let Ok(range) = parse_range(header, size) {
        assert!(range.start < range.end, "{header:?} gave empty {range:?}");
        assert!(range.end <= size, "{header:?} gave {range:?} past {size}");
        if let Some((a, b)) = header
            .trim()
            .strip_prefix("bytes=")
            .and_then(|s| s.split_once('-'))
        {
            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                if b < size {
                    assert_eq!(range, a..b + 1, "{header:?}");
                }
            }
        }
    }

    if let Some((start, len)) = parse_content_range(header) {
        assert!(len >= 1, "{header:?} gave an empty chunk");
        let end = start
            .checked_add(len - 1)
            .unwrap_or_else(|| panic!("{header:?}: chunk end overflows"));
        assert!(end < i64::MAX as u64, "{header:?}: end {end} exceeds i64");
        assert_eq!(
            parse_content_range(&format!("{start}-{end}")),
            Some((start, len)),
            "{header:?}"
        );
    }
});
