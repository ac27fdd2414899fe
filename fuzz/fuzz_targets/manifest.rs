//! Fuzzes manifest and index parsing and validation (`store::manifest::parse`).
//!
//! Each input is parsed as the body of a push with no Content-Type, with each
//! of the four manifest media types, and with a parameterised one. Parsing
//! must not panic, and a manifest accepted once must be accepted again when
//! pushed with the media type it was accepted as, with the same result. What
//! it references must match its kind: an image references its config first,
//! an index only child manifests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::manifest::{self, RefKind, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_LIST),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    for content_type in CONTENT_TYPES {
        let Ok(m) = manifest::parse(content_type, data) else {
            continue;
        };
        let again = manifest::parse(Some(&m.media_type), data)
            .unwrap_or_else(|e| panic!("accepted as {} but then rejected: {e}", m.media_type));
        assert_eq!(again.media_type, m.media_type);
        assert_eq!(again.refs, m.refs);
        assert_eq!(again.subject, m.subject);
        assert_eq!(again.artifact_type, m.artifact_type);
        assert_eq!(again.annotations, m.annotations);
        if let Some(a) = &m.annotations {
            assert!(serde_json::from_str::<serde_json::Value>(a).is_ok_and(|v| v.is_object()));
        }
        if manifest::is_index(&m.media_type) {
            assert!(m.refs.iter().all(|(_, kind, _)| *kind == RefKind::Manifest));
        } else {
            assert_eq!(m.refs.first().map(|(_, kind, _)| *kind), Some(RefKind::Blob));
            assert!(m.refs.iter().all(|(_, kind, _)| *kind != RefKind::Manifest));
        }
    }
});
