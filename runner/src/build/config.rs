//! The image config as the builder grows it (Docker's JSON, kept as a
//! `serde_json` value so fields the runner does not read survive), history
//! entries, and the small value parsers of EXPOSE, HEALTHCHECK and
//! `--chown`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::view::LayerView;

/// The default PATH BuildKit gives an image without one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `created` for history and the image: `SOURCE_DATE_EPOCH`, or now.
pub fn created() -> String {
    let (secs, nanos) = match super::layer::source_date_epoch() {
        Some(s) => (s, 0),
        None => {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (d.as_secs() as i64, d.subsec_nanos())
        }
    };
    rfc3339(secs, nanos)
}

/// The history time of a step: `SOURCE_DATE_EPOCH` when set, else when
/// the step ran (`recorded`, from its cache record).
pub fn step_time(recorded: Option<&str>) -> String {
    match (super::layer::source_date_epoch(), recorded) {
        (None, Some(t)) => t.to_owned(),
        _ => created(),
    }
}

/// RFC 3339 in UTC.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}")
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The `config` object of an image config, created if missing.
pub fn exec_mut(image: &mut Value) -> &mut Map<String, Value> {
    if !image.get("config").is_some_and(Value::is_object) {
        image["config"] = json!({});
    }
    image["config"]
        .as_object_mut()
        .expect("just made an object")
}

/// The Env of an image config as (key, value) pairs.
pub fn env(image: &Value) -> Vec<(String, String)> {
    image["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// Sets `key=value` in the Env, replacing an earlier value in place.
pub fn set_env(image: &mut Value, key: &str, value: &str) {
    let mut pairs = env(image);
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1 = value.to_owned(),
        None => pairs.push((key.to_owned(), value.to_owned())),
    }
    exec_mut(image).insert(
        "Env".into(),
        pairs
            .iter()
            .map(|(k, v)| Value::from(format!("{k}={v}")))
            .collect(),
    );
}

/// Adds a history entry.
pub fn history(image: &mut Value, created_by: String, empty_layer: bool, created: &str) {
    if !image.get("history").is_some_and(Value::is_array) {
        image["history"] = json!([]);
    }
    let mut h = json!({
        "created": created,
        "created_by": created_by,
        "comment": "buildkit.dockerfile.v0",
    });
    if empty_layer {
        h["empty_layer"] = json!(true);
    }
    image["history"].as_array_mut().expect("an array").push(h);
}

/// `80`, `80/udp`, `8000-8002/tcp` -> port keys.
pub fn ports(spec: &str) -> Result<Vec<String>, String> {
    let (range, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto {proto:?} in {spec:?}"));
    }
    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
    let (lo, hi): (u16, u16) = match (lo.parse(), hi.parse()) {
        (Ok(l), Ok(h)) if l <= h => (l, h),
        _ => return Err(format!("invalid port {spec:?}")),
    };
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds.
pub fn duration_ns(text: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("invalid duration unit in {text:?}")),
        };
    }
    if !num.is_empty() {
        return Err(format!("missing unit in duration {text:?}"));
    }
    Ok(total as i64)
}

fn db(view: &LayerView, file: &str) -> Vec<Vec<String>> {
    let text = view
        .read(std::path::Path::new(file))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

/// `--chown=user[:group]` through the image's /etc/passwd and /etc/group.
/// A user alone gives its passwd group (a uid alone: the same number).
pub fn chown(spec: &str, view: &LayerView) -> Result<(u32, u32), String> {
    let (user, group) = spec
        .split_once(':')
        .map_or((spec, None), |(u, g)| (u, Some(g)));
    let passwd = db(view, "etc/passwd");
    let (uid, user_gid) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            let e = passwd
                .iter()
                .find(|e| e.len() >= 4 && e[0] == user)
                .ok_or_else(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?;
            (e[2].parse().unwrap_or(0), e[3].parse().unwrap_or(0))
        }
    };
    let gid = match group {
        None => user_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => db(view, "etc/group")
                .iter()
                .find(|e| e.len() >= 3 && e[0] == g)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(ports("1-3").unwrap().len(), 3);
        assert!(ports("x").is_err());
        assert_eq!(duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration_ns("500ms").unwrap(), 500_000_000);
        assert!(duration_ns("5").is_err());
    }
}
