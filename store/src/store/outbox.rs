//! The outbox of webhook events: put in by writes (through [`crate::Effects`])
//! or on their own, claimed with a lease by the delivery task of whichever
//! replica asks first, then deleted once delivered or kept as dead.

use std::time::Duration;

use super::Store;
use crate::{NewEvent, OutboxEvent, Result};

impl Store {
    /// Put events in the outbox that no write carries (a pull, a warning).
    pub async fn enqueue_events(&self, events: &[NewEvent]) -> Result<()> {
        self.meta.enqueue_events(events).await
    }

    /// Claim up to `limit` due events for `owner` for `lease`: the oldest
    /// pending event of each (target, repository), so that each
    /// repository's events reach a target in order. Another replica claims
    /// none of them until the lease runs out.
    pub async fn claim_events(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        self.meta.claim_events(owner, lease_ms, limit).await
    }

    /// The event was delivered: it leaves the outbox.
    pub async fn event_delivered(&self, seq: i64) -> Result<()> {
        self.meta.event_delivered(seq).await
    }

    /// Delivering the event failed with `error`: due again at `retry_at_ms`
    /// (ms since the epoch), or dead with `None`.
    pub async fn event_failed(
        &self,
        seq: i64,
        retry_at_ms: Option<i64>,
        error: &str,
    ) -> Result<()> {
        self.meta.event_failed(seq, retry_at_ms, error).await
    }

    /// The dead events (the dead-letter list), oldest first.
    pub async fn dead_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        self.meta.dead_events(limit).await
    }

    /// Queue dead events again (those `seqs` names, or all with `None`),
    /// due now with their failures forgotten; returns how many.
    pub async fn revive_events(&self, seqs: Option<&[i64]>) -> Result<u64> {
        self.meta.revive_events(seqs).await
    }

    /// How many events are pending and dead.
    pub async fn outbox_counts(&self) -> Result<(u64, u64)> {
        self.meta.outbox_counts().await
    }
}
