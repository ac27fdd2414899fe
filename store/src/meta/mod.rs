//! All SQL lives here: the metadata of blobs, manifests, tags and uploads.
//!
//! The same queries run on SQLite (the embedded default) and PostgreSQL
//! through sqlx's `Any` driver, so they stick to the SQL both understand and
//! use `$n` placeholders. SQLite runs in WAL mode with `synchronous=FULL`, one
//! writer connection and a pool of readers; PostgreSQL uses one pool for both.
//! Every multi-row change is one transaction.
//!
//! One file per table group, each adding methods to [`Meta`]:
//!
//! ```text
//! meta (open, migrations, pools, secrets, now)
//!  ├── blobs      blobs, repo_blobs
//!  ├── uploads    uploads, upload_parts
//!  ├── manifests  manifests, manifest_refs (and the tags a push sets)
//!  ├── tags       tags, tag_versions
//!  ├── repos      repository listing (manifests ∪ repo_blobs)
//!  ├── browse     read-only summaries for a UI (sizes, tag details, totals)
//!  ├── pulls      mirror_pulls: last pull of each mirrored repository
//!  ├── outbox     outbox: events for webhooks, written by the writes above
//!  ├── retention  [[retention]]: a repository's facts, deletes if unchanged, manifest_pulls
//!  └── gc         sweep, orphan and integrity queries, the GC and retention locks
//!  ├── quota      quota usage, and admission inside the writes above
//!  └── gc         sweep, orphan and integrity queries, the GC lock
//! ```
//! The submodules use only this module's pools and helpers, never each other,
//! except that writes put their events in the outbox through
//! `outbox::insert_events`, inside their own transaction ([`Effects`]),
//! and the writes that add bytes check quotas through `Meta::admit`.

mod blobs;
mod browse;
mod gc;
mod manifests;
mod outbox;
mod pulls;
pub(crate) mod quota;
mod repos;
mod retention;
mod tags;
mod uploads;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

use crate::{Digest, Error, Result, Tag};

pub use browse::{RepoSort, RepoSummary, StoreTotals, TagDetail};
pub use gc::GcLock;
pub use manifests::Checks;
pub use outbox::{now_ms, NewEvent, OutboxEvent};
pub use retention::{ManifestFact, RetentionFacts, TagFact};
pub use uploads::UploadRow;

/// What a write checks and records in its own transaction, beside its change.
#[derive(Clone, Copy, Default)]
pub struct Effects<'a> {
    /// Tags that may not move or go once set (immutable tags): a write that
    /// would point one elsewhere or remove it fails with [`Error::TagLocked`].
    pub locked: Option<&'a (dyn Fn(&Tag) -> bool + Sync)>,
    /// Events for the outbox, committed with the change or not at all.
    pub events: &'a [NewEvent],
}

impl Effects<'_> {
    /// Whether `tag` is locked.
    fn is_locked(&self, tag: &Tag) -> bool {
        self.locked.is_some_and(|f| f(tag))
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Handle on the metadata database.
#[derive(Clone)]
pub struct Meta {
    read: AnyPool,
    write: AnyPool,
}

/// A digest column, parsed (a bad one is corruption).
fn digest_col(row: &sqlx::any::AnyRow, col: &str) -> Result<Digest> {
    let s: String = row.try_get(col)?;
    Digest::from_str(&s).map_err(|_| Error::Corrupt {
        detail: format!("bad digest {s:?} in column {col}"),
    })
}

impl Meta {
    /// Connect to `url` (`sqlite://...` or `postgres://...`) and apply migrations.
    pub async fn open(url: &str) -> Result<Meta> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        if url.starts_with("sqlite:") {
            let pool = |max: u32| {
                AnyPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
            };
            let write = pool(1).await?;
            SQLITE_MIGRATIONS.run(&write).await?;
            let read = pool(8).await?;
            Ok(Meta { read, write })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // A request waits this long for a connection: through a
            // PostgreSQL restart (seconds), but not for a database that is
            // down, which the caller reports as unavailable (503).
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Ok(Meta {
                read: pool.clone(),
                write: pool,
            })
        } else {
            Err(Error::Config {
                detail: format!("unsupported database URL {url:?}: use sqlite:// or postgres://"),
            })
        }
    }

    /// Close every connection and wait until they are closed. SQLite
    /// connections each run on a worker thread, which exits once closed.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Check that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The secret called `name`, created from `candidate` if there is none yet.
    /// Every replica sharing the database gets the same value.
    pub async fn secret(&self, name: &str, candidate: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.write)
        .await?;
        let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.write)
            .await?;
        Ok(row.get(0))
    }

    /// A write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), waiting for it up to `busy_timeout`: a deferred
    /// one that read first fails at once with "database is locked" when
    /// another process (runners sharing a root) wrote in between.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.is_sqlite() {
            self.write.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.write.begin().await?
        })
    }

    /// Whether the database is SQLite (else PostgreSQL).
    fn is_sqlite(&self) -> bool {
        self.read.connect_options().database_url.scheme() == "sqlite"
    }
}
