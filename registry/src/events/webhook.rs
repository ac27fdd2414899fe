//! The delivery task: claim due events from the outbox (the oldest pending
//! one of each webhook and repository, with a lease), POST each to its
//! webhook, then delete it, or schedule a retry with exponential backoff,
//! or after `max_attempts` failures leave it dead (the dead-letter list).
//!
//! Delivery is at least once: a replica that dies after POSTing but before
//! the row is deleted leaves a lease that runs out, and the event is sent
//! again with the same id. Replicas sharing PostgreSQL claim with
//! `FOR UPDATE SKIP LOCKED`, so one event goes out once in the normal case.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::{OutboxEvent, Store};

use super::cloudevent::{sign, CONTENT_TYPE, SIGNATURE_HEADER};
use super::{Events, Webhook};

/// How often the outbox is looked at when nothing woke the task.
const POLL: Duration = Duration::from_secs(1);

/// Events claimed at once (each a different webhook and repository).
const BATCH: u32 = 64;

/// Delivery counters and the outbox gauges for `/metrics`.
#[derive(Default)]
pub struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    pending_gauge: AtomicU64,
    dead_gauge: AtomicU64,
}

impl Counters {
    pub(super) fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP strata_webhook_deliveries_total Webhook delivery attempts by result.\n\
             # TYPE strata_webhook_deliveries_total counter\n\
             strata_webhook_deliveries_total{{result=\"delivered\"}} {}\n\
             strata_webhook_deliveries_total{{result=\"failed\"}} {}\n\
             strata_webhook_deliveries_total{{result=\"dead\"}} {}\n\
             # HELP strata_outbox_events Events in the outbox: pending, or dead after max_attempts.\n\
             # TYPE strata_outbox_events gauge\n\
             strata_outbox_events{{state=\"pending\"}} {}\n\
             strata_outbox_events{{state=\"dead\"}} {}\n",
            get(&self.delivered),
            get(&self.failed),
            get(&self.dead),
            get(&self.pending_gauge),
            get(&self.dead_gauge),
        )
    }
}

/// Deliver the outbox until the process ends. `S` gives the store (the
/// server's state).
pub async fn deliver<S: AsRef<Store> + Send + Sync + 'static>(holder: Arc<S>, events: Events) {
    let owner = hex::encode(&crate::auth::rand_bytes()[..8]);
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; no deliveries");
            return;
        }
    };
    // A claim outlives the slowest delivery, so a live replica's events are
    // not claimed by another while it is still sending them.
    let longest = events
        .inner
        .webhooks
        .iter()
        .map(|w| w.timeout)
        .max()
        .unwrap_or(POLL);
    let lease = longest + Duration::from_secs(5);
    loop {
        let store = (*holder).as_ref();
        let batch = match store.claim_events(&owner, lease, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: cannot read the outbox");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        if batch.is_empty() {
            if let Ok((pending, dead)) = store.outbox_counts().await {
                let m = &events.inner.metrics;
                m.pending_gauge.store(pending, Ordering::Relaxed);
                m.dead_gauge.store(dead, Ordering::Relaxed);
            }
            let _ = tokio::time::timeout(POLL, events.inner.wake.notified()).await;
            continue;
        }
        let sends = batch.into_iter().map(|e| send(store, &client, &events, e));
        futures::future::join_all(sends).await;
    }
}

/// Deliver one claimed event and record the outcome.
async fn send(store: &Store, client: &reqwest::Client, events: &Events, e: OutboxEvent) {
    let m = &events.inner.metrics;
    let result = match events.webhook(&e.target) {
        Some(hook) => post(client, hook, &e).await.map(|()| hook),
        None => Err(format!("no [[webhook]] named {:?} is configured", e.target)),
    };
    let outcome = match result {
        Ok(_) => {
            m.delivered.fetch_add(1, Ordering::Relaxed);
            store.event_delivered(e.seq).await
        }
        Err(error) => {
            let attempts = e.attempts + 1;
            let hook = events.webhook(&e.target);
            let max = hook.map_or(10, |h| h.max_attempts);
            let retry_at = (attempts < max).then(|| {
                let delay = hook.map_or(Duration::from_secs(60), |h| h.retry_delay(attempts));
                store::now_ms() + delay.as_millis() as i64
            });
            if retry_at.is_some() {
                m.failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target = %e.target, id = %e.event_id, attempts, %error, "webhook delivery failed; will retry");
            } else {
                m.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %e.target, id = %e.event_id, attempts, %error, "webhook delivery failed for good; event is dead");
            }
            store.event_failed(e.seq, retry_at, &error).await
        }
    };
    if let Err(err) = outcome {
        tracing::warn!(error = %err, id = %e.event_id, "webhooks: cannot record a delivery");
    }
}

/// POST the event; any 2xx is a delivery.
async fn post(client: &reqwest::Client, hook: &Webhook, e: &OutboxEvent) -> Result<(), String> {
    let mut request = client
        .post(&hook.url)
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-strata-event-id", &e.event_id)
        .body(e.payload.clone());
    if let Some(secret) = &hook.secret {
        request = request.header(SIGNATURE_HEADER, sign(secret, e.payload.as_bytes()));
    }
    let response = request.send().await.map_err(|e| format!("{e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}
