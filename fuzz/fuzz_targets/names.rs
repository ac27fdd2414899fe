//! Fuzzes the store's name parsers: `Digest`, `RepoName`, `Tag`, `Reference`
//! and `UploadId`.
//!
//! Whatever the input, parsing must not panic, and whatever parses must:
//! - print back as exactly the input (the types keep the text they validated);
//! - keep the invariants storage keys rely on (no `..`, no empty component,
//!   no leading `/`, bounded length, only the grammar's characters);
//! - agree with its serde `Deserialize` (both doors validate the same way);
//! - agree with `Reference`, which is a tag or a digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::{Digest, Reference, RepoName, Tag, UploadId, MAX_NAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    let digest = s.parse::<Digest>().ok();
    if let Some(d) = &digest {
        assert_eq!(d.to_string(), s);
        assert_eq!(format!("{}:{}", d.algorithm().name(), d.hex()), s);
        assert!(d
            .hex()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    }
    // Serde is the other door (digests in JSON bodies): it must agree.
    let via_serde = serde_json::from_value::<Digest>(serde_json::Value::String(s.to_owned()));
    assert_eq!(via_serde.ok(), digest);

    let name = s.parse::<RepoName>().ok();
    if let Some(n) = &name {
        assert_eq!(n.to_string(), s);
        assert!(n.as_str().len() <= MAX_NAME_LEN);
        assert!(n
            .as_str()
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/')));
        assert!(n
            .as_str()
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".."));
    }

    let tag = s.parse::<Tag>().ok();
    if let Some(t) = &tag {
        assert_eq!(t.to_string(), s);
        assert!(!t.as_str().is_empty() && t.as_str().len() <= 128);
        assert!(!t.as_str().contains(['/', ':']));
        assert!(!t.as_str().starts_with(['.', '-']));
    }

    let reference = s.parse::<Reference>().ok();
    match (&reference, &tag, &digest) {
        (Some(Reference::Tag(r)), Some(t), None) => assert_eq!(r, t),
        (Some(Reference::Digest(r)), None, Some(d)) => assert_eq!(r, d),
        (None, None, None) => {}
        other => panic!("Reference {s:?} disagrees with Tag and Digest: {other:?}"),
    }
    if let Some(r) = &reference {
        assert_eq!(r.to_string(), s);
    }

    if let Ok(id) = s.parse::<UploadId>() {
        assert_eq!(id.to_string(), s);
        assert_eq!(id.as_str().len(), 36);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-')));
    }
});
