//! Prometheus metrics, kept in atomics and rendered in the text format.
//!
//! Gauges that cost a database query (stored bytes) are cached: a scrape
//! serves the last value and, when it is older than
//! [`STORAGE_REFRESH`], starts one refresh in the background, so scraping
//! never runs a full-table query per request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Log lines the log writer dropped (a full queue or a dead log reader).
/// Process-wide, as the log writer is; see [`crate::log`].
pub static LOG_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// How old the cached stored-bytes gauge may get before a scrape refreshes it.
pub const STORAGE_REFRESH: Duration = Duration::from_secs(60);

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The registry's counters and gauges.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    uploads_in_flight: AtomicI64,
    gc_runs: AtomicU64,
    gc_failures: AtomicU64,
    gc_last_success: AtomicU64,
    gc_bytes_freed: AtomicU64,
    stored_bytes: AtomicU64,
    /// When the stored-bytes gauge was last refreshed (or a refresh claimed).
    stored_at: Mutex<Option<Instant>>,
}

/// GC since this process started (see [`Metrics::gc_status`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GcStatus {
    /// Runs that finished.
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// When a run last finished, Unix seconds (0: none).
    pub last_success: u64,
    /// Bytes freed in all.
    pub bytes_freed: u64,
}

impl Metrics {
    /// Record one finished request.
    pub fn request(
        &self,
        route: &'static str,
        status: u16,
        elapsed: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        *self
            .requests
            .lock()
            .expect("metrics poisoned")
            .entry((route, status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// An upload request started (+1) or ended (-1).
    pub fn upload_in_flight(&self, delta: i64) {
        self.uploads_in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Record a GC run.
    pub fn gc_run(&self, bytes_freed: u64) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_bytes_freed
            .fetch_add(bytes_freed, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.gc_last_success.store(now, Ordering::Relaxed);
    }

    /// GC as this process saw it: runs, failures, last success, bytes freed.
    pub fn gc_status(&self) -> GcStatus {
        GcStatus {
            runs: self.gc_runs.load(Ordering::Relaxed),
            failures: self.gc_failures.load(Ordering::Relaxed),
            last_success: self.gc_last_success.load(Ordering::Relaxed),
            bytes_freed: self.gc_bytes_freed.load(Ordering::Relaxed),
        }
    }

    /// Record a GC run that failed.
    pub fn gc_failed(&self) {
        self.gc_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Claim the refresh of the stored-bytes gauge if it is older than
    /// `max_age` (or was never read): true for one caller per period.
    pub fn storage_refresh_due(&self, max_age: Duration) -> bool {
        let mut at = self.stored_at.lock().expect("metrics poisoned");
        let now = Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < max_age) {
            return false;
        }
        *at = Some(now);
        true
    }

    /// Record the stored bytes, read from the store.
    pub fn set_stored_bytes(&self, bytes: u64) {
        self.stored_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Render everything, gauges from their cached values.
    pub fn render(&self) -> String {
        let stored_bytes = self.stored_bytes.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP strata_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE strata_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics poisoned").iter() {
            let _ = writeln!(
                out,
                "strata_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP strata_request_duration_seconds Request latency.\n");
        out.push_str("# TYPE strata_request_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency) {
            let _ = writeln!(
                out,
                "strata_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "strata_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "strata_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "strata_request_duration_seconds_count {count}");
        let gauges: [(&str, &str, &str, i128); 9] = [
            (
                "strata_bytes_received_total",
                "counter",
                "Request body bytes.",
                self.bytes_in.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_bytes_sent_total",
                "counter",
                "Response body bytes.",
                self.bytes_out.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_uploads_in_flight",
                "gauge",
                "Upload requests being served.",
                self.uploads_in_flight.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_storage_bytes",
                "gauge",
                "Bytes of stored content.",
                stored_bytes as i128,
            ),
            (
                "strata_gc_runs_total",
                "counter",
                "Garbage collection runs.",
                self.gc_runs.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_gc_failures_total",
                "counter",
                "Garbage collection runs that failed (the log says why).",
                self.gc_failures.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_gc_last_success_timestamp_seconds",
                "gauge",
                "When garbage collection last finished, in Unix seconds (0: not since start).",
                self.gc_last_success.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_gc_bytes_freed_total",
                "counter",
                "Bytes freed by garbage collection.",
                self.gc_bytes_freed.load(Ordering::Relaxed) as i128,
            ),
            (
                "strata_log_lines_dropped_total",
                "counter",
                "Log lines dropped because the log reader was gone or too slow.",
                LOG_LINES_DROPPED.load(Ordering::Relaxed) as i128,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.request("manifest", 200, Duration::from_millis(3), 0, 512);
        m.gc_run(1024);
        m.gc_failed();
        m.set_stored_bytes(4096);
        let text = m.render();
        assert!(text.contains("strata_gc_failures_total 1"), "{text}");
        assert!(
            !text.contains("strata_gc_last_success_timestamp_seconds 0\n"),
            "{text}"
        );
        assert!(text.contains("strata_requests_total{route=\"manifest\",status=\"200\"} 1"));
        assert!(text.contains("strata_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("strata_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("strata_bytes_sent_total 512"));
        assert!(text.contains("strata_storage_bytes 4096"));
        assert!(text.contains("strata_gc_bytes_freed_total 1024"));
    }

    #[test]
    fn one_storage_refresh_per_period() {
        let m = Metrics::default();
        assert!(m.storage_refresh_due(STORAGE_REFRESH), "never read");
        assert!(!m.storage_refresh_due(STORAGE_REFRESH));
        assert!(m.storage_refresh_due(Duration::ZERO));
    }
}
