-- Events waiting to be delivered to webhooks: one row per (event, webhook),
-- written in the same transaction as the change the event describes. A
-- delivered row is deleted; one that failed max_attempts times stays as
-- `dead` (the dead-letter list). Rows of one (target, repo) are delivered in
-- seq order: only the oldest pending one of each is claimed. A replica claims
-- a row by setting claimed_until (a lease, in ms since the epoch); a row
-- whose lease ran out (its replica died) is claimed again.
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    target          TEXT NOT NULL,
    repo            TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claimed_until   INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
) STRICT;

CREATE INDEX outbox_groups ON outbox (state, target, repo, seq);
