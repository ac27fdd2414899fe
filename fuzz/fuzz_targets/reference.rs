//! Fuzzes the runner's image reference parser
//! (`[registry/]repository[:tag][@digest]`). Digests are the store's type,
//! fuzzed in `names`.
//!
//! - Parsing must not panic.
//! - A parsed reference is normalised: printing it and parsing that gives the
//!   same reference, and it always names a tag or a digest to ask for.
//! - Its repository is path-safe (no empty, `.` or `..` component), and its
//!   registry host holds only DNS-name characters and a port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::image::reference::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    let Ok(r) = s.parse::<Reference>() else {
        return;
    };
    let printed = r.to_string();
    let reparsed = printed
        .parse::<Reference>()
        .unwrap_or_else(|e| panic!("{s:?} parsed, but its printed form {printed:?} did not: {e}"));
    assert_eq!(reparsed, r, "{s:?} printed as {printed:?}");
    assert!(r.tag.is_some() || r.digest.is_some());
    assert!(!r.reference_str().is_empty());
    assert!(r
        .repository
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".."));
    assert!(r
        .registry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)));
});
