//! One event as CloudEvents 1.0 JSON (structured mode), its id, and the
//! signature of a body.
//!
//! ```json
//! {"specversion": "1.0", "type": "io.strata.registry.push", "source": "//registry.example",
//!  "id": "…", "time": "2026-12-02T01:46:55.123Z", "subject": "prod/app:v1",
//!  "datacontenttype": "application/json",
//!  "data": {"repository": "prod/app", "tag": "v1", "digest": "sha256:…",
//!           "mediaType": "…", "size": 1234, "actor": "alice", "clientAddress": "10.0.0.7"}}
//! ```

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Actor, Kind};

/// The header carrying `sha256=<hex>`: the HMAC-SHA256 of the body with the
/// webhook's secret.
pub const SIGNATURE_HEADER: &str = "x-strata-signature-256";

/// The media type of a structured CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// What an event is about.
#[derive(Debug, Clone, Default)]
pub struct EventData {
    /// The repository.
    pub repository: String,
    /// The tag, when the change was made through one.
    pub tag: Option<String>,
    /// The manifest's (or blob's) digest.
    pub digest: Option<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// For a mount: the repository the blob came from.
    pub from: Option<String>,
    /// For a quota warning: the quota's repository glob.
    pub quota: Option<String>,
    /// For a quota warning: its usage in bytes.
    pub used: Option<u64>,
    /// For a quota warning: its budget in bytes.
    pub limit: Option<u64>,
}

/// A random event id, in the form of a UUID (version 4).
fn new_id() -> String {
    let mut b = crate::auth::rand_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The id and JSON body of an event of `kind` by `actor`.
pub fn render(kind: Kind, actor: &Actor, data: &EventData) -> (String, String) {
    let id = new_id();
    let subject = match (&data.tag, &data.digest) {
        (Some(tag), _) => format!("{}:{tag}", data.repository),
        (None, Some(digest)) => format!("{}@{digest}", data.repository),
        (None, None) => data.repository.clone(),
    };
    let mut body = serde_json::Map::new();
    body.insert("repository".into(), json!(data.repository));
    let optional = [
        ("tag", data.tag.as_ref().map(|v| json!(v))),
        ("digest", data.digest.as_ref().map(|v| json!(v))),
        ("mediaType", data.media_type.as_ref().map(|v| json!(v))),
        ("size", data.size.map(|v| json!(v))),
        ("from", data.from.as_ref().map(|v| json!(v))),
        ("quota", data.quota.as_ref().map(|v| json!(v))),
        ("used", data.used.map(|v| json!(v))),
        ("limit", data.limit.map(|v| json!(v))),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body.insert(key.into(), v);
        }
    }
    body.insert("actor".into(), json!(actor.user));
    body.insert(
        "clientAddress".into(),
        json!(actor.client.map(|a| a.to_string())),
    );
    let event = json!({
        "specversion": "1.0",
        "type": format!("io.strata.registry.{}", kind.name()),
        "source": format!("//{}", actor.host),
        "id": id,
        "time": crate::rfc3339::format_ms(store::now_ms()),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": body,
    });
    (id, event.to_string())
}

/// `sha256=<hex>` of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cloudevents_with_distinct_ids() {
        let actor = Actor {
            user: "alice".into(),
            client: Some("10.0.0.7".parse().unwrap()),
            host: "reg.example".into(),
        };
        let data = EventData {
            repository: "prod/app".into(),
            tag: Some("v1".into()),
            digest: Some("sha256:ab".into()),
            ..EventData::default()
        };
        let (id, body) = render(Kind::Push, &actor, &data);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.strata.registry.push");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["subject"], "prod/app:v1");
        assert_eq!(v["data"]["actor"], "alice");
        assert_eq!(v["data"]["clientAddress"], "10.0.0.7");
        assert_ne!(render(Kind::Push, &actor, &data).0, id);
    }

    #[test]
    fn signature_is_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
