//! `runner history`: an image's history entries, newest first, with the
//! size of the layer each made (as `docker history` prints them).

use crate::image::store::ImageRecord;

/// The table `runner history` prints.
pub fn table(record: &ImageRecord) -> String {
    let history: Vec<serde_json::Value> = record
        .image_config
        .other
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    let mut sizes = record.layers.iter().map(|l| l.size);
    let mut rows = Vec::new();
    for h in &history {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
        let created = h["created"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(19)
            .collect::<String>();
        let by = h["created_by"].as_str().unwrap_or("").replace('\n', " ");
        let comment = h["comment"].as_str().unwrap_or("");
        rows.push(format!(
            "{created:<20} {:<60} {:>10} {comment}\n",
            shorten(&by, 60),
            human(size)
        ));
    }
    rows.reverse();
    let mut out = format!(
        "{:<20} {:<60} {:>10} COMMENT\n",
        "CREATED", "CREATED BY", "SIZE"
    );
    out.extend(rows);
    out
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(n - 3).collect();
    t.push_str("...");
    t
}

fn human(bytes: u64) -> String {
    if bytes == 0 {
        "0B".into()
    } else if bytes < 1000 {
        format!("{bytes}B")
    } else if bytes < 1_000_000 {
        format!("{:.1}kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1}MB", bytes as f64 / 1e6)
    }
}
