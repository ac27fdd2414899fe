//! `outbox`: events waiting for their webhook, one row per (event, target).
//!
//! Rows are inserted by the writes they describe, in the same transaction
//! ([`insert_events`], called from the other table groups' writes through
//! `meta`). Delivery claims the oldest pending row of each (target, repo)
//! with a lease, so replicas never deliver the same row at once and each
//! repository's events go out in order; a delivered row is deleted, a row
//! that failed too often is kept as `dead`.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use super::Meta;
use crate::Result;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An event to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The webhook it goes to.
    pub target: String,
    /// The repository it is about (events of one repository keep their order).
    pub repo: String,
    /// Its id, the same for every target (receivers de-duplicate on it).
    pub event_id: String,
    /// The body to deliver.
    pub payload: String,
}

/// A claimed (or dead) outbox row.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// Its position in the outbox.
    pub seq: i64,
    /// The webhook it goes to.
    pub target: String,
    /// The repository it is about.
    pub repo: String,
    /// The event's id.
    pub event_id: String,
    /// The body to deliver.
    pub payload: String,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

fn outbox_row(r: &sqlx::any::AnyRow) -> Result<OutboxEvent> {
    Ok(OutboxEvent {
        seq: r.try_get("seq")?,
        target: r.try_get("target")?,
        repo: r.try_get("repo")?,
        event_id: r.try_get("event_id")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get::<i64, _>("attempts")? as u32,
        last_error: r.try_get("last_error")?,
    })
}

/// Put `events` in the outbox inside the caller's transaction.
pub(super) async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[NewEvent],
) -> Result<()> {
    let now = now_ms();
    for e in events {
        sqlx::query(
            "INSERT INTO outbox (target, repo, event_id, payload, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&e.target)
        .bind(&e.repo)
        .bind(&e.event_id)
        .bind(&e.payload)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The oldest pending row of each (target, repo) that is due and unclaimed.
const CLAIMABLE: &str = "SELECT o.seq FROM outbox o \
     WHERE o.state = 'pending' AND o.next_attempt_at <= $3 AND o.claimed_until <= $3 \
     AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.state = 'pending' \
         AND p.target = o.target AND p.repo = o.repo AND p.seq < o.seq) \
     ORDER BY o.seq LIMIT $4";

impl Meta {
    /// Put events in the outbox on their own (events no write carries).
    pub async fn enqueue_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Claim up to `limit` due rows for `owner` until `lease_ms` from now:
    /// at most one per (target, repo), its oldest pending one.
    pub async fn claim_events(
        &self,
        owner: &str,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>> {
        let now = now_ms();
        // PostgreSQL: replicas claiming at once skip each other's rows.
        let lock = if self.is_sqlite() {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        let sql = format!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2 \
             WHERE seq IN ({CLAIMABLE}{lock}) \
             RETURNING seq, target, repo, event_id, payload, attempts, last_error"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.write)
            .await?;
        let mut events = rows.iter().map(outbox_row).collect::<Result<Vec<_>>>()?;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// A row was delivered: it leaves the outbox.
    pub async fn event_delivered(&self, seq: i64) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE seq = $1")
            .bind(seq)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// A delivery failed: try again at `retry_at_ms`, or with `None` give
    /// up (the row is dead: kept, never claimed again).
    pub async fn event_failed(
        &self,
        seq: i64,
        retry_at_ms: Option<i64>,
        error: &str,
    ) -> Result<()> {
        let (state, at) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("dead", now_ms()),
        };
        sqlx::query(
            "UPDATE outbox SET state = $1, next_attempt_at = $2, attempts = attempts + 1, \
             last_error = $3, claimed_by = NULL, claimed_until = 0 WHERE seq = $4",
        )
        .bind(state)
        .bind(at)
        .bind(error)
        .bind(seq)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Dead rows, oldest first, at most `limit`.
    pub async fn dead_events(&self, limit: u32) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT seq, target, repo, event_id, payload, attempts, last_error FROM outbox \
             WHERE state = 'dead' ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(outbox_row).collect()
    }

    /// Make dead rows pending again, due now with no failures counted: the
    /// rows `seqs` names, or every dead row when it is `None`. Returns how
    /// many. A revived row goes out before later rows of its repository.
    pub async fn revive_events(&self, seqs: Option<&[i64]>) -> Result<u64> {
        const REVIVE: &str = "UPDATE outbox SET state = 'pending', attempts = 0, \
             next_attempt_at = $1, claimed_by = NULL, claimed_until = 0 WHERE state = 'dead'";
        let now = now_ms();
        let Some(seqs) = seqs else {
            let done = sqlx::query(REVIVE).bind(now).execute(&self.write).await?;
            return Ok(done.rows_affected());
        };
        let mut tx = self.begin_write().await?;
        let mut revived = 0;
        for seq in seqs {
            let done = sqlx::query(&format!("{REVIVE} AND seq = $2"))
                .bind(now)
                .bind(*seq)
                .execute(&mut *tx)
                .await?;
            revived += done.rows_affected();
        }
        tx.commit().await?;
        Ok(revived)
    }

    /// Rows pending and dead.
    pub async fn outbox_counts(&self) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS BIGINT) FROM outbox",
        )
        .fetch_one(&self.read)
        .await?;
        Ok((
            row.try_get::<i64, _>(0)? as u64,
            row.try_get::<i64, _>(1)? as u64,
        ))
    }
}
