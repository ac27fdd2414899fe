//! What kind of backend failure an error is: the storage or the database
//! full, unavailable, too slow, refusing us, or holding bad data.
//!
//! Errors of the backends (`std::io`, `object_store`, `sqlx`) become a
//! [`crate::Error`] in one place, its `From` impls, and are classified there,
//! once, by [`of_storage`] and [`of_database`]. Callers (the registry's error
//! table, the runner's messages) read [`crate::Error::fault`] and never look
//! inside the backends' errors themselves.

use std::error::Error as StdError;
use std::io;

/// Which backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The object storage (local files or S3).
    Storage,
    /// The metadata database (SQLite or PostgreSQL).
    Database,
}

impl Backend {
    /// `storage` or `database`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Storage => "storage",
            Backend::Database => "database",
        }
    }
}

/// The kind of a backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No space left (ENOSPC, EDQUOT, SQLITE_FULL, PostgreSQL's disk_full).
    Full,
    /// The backend cannot be reached or is restarting: retry later.
    Unavailable,
    /// The backend did not answer in time: retry later.
    Timeout,
    /// The backend refuses us (file permissions, S3 credentials, a read-only
    /// filesystem): an operator must fix it.
    Permission,
    /// The backend reports damaged data.
    Corrupt,
}

impl Fault {
    /// Short name for logs and metrics: `full`, `unavailable`, ...
    pub fn name(self) -> &'static str {
        match self {
            Fault::Full => "full",
            Fault::Unavailable => "unavailable",
            Fault::Timeout => "timeout",
            Fault::Permission => "permission",
            Fault::Corrupt => "corrupt",
        }
    }

    /// Whether the same request may succeed later without anyone acting.
    pub fn transient(self) -> bool {
        matches!(self, Fault::Unavailable | Fault::Timeout)
    }
}

/// The fault an I/O error stands for, if it is one.
pub fn of_io(e: &io::Error) -> Option<Fault> {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => return Some(Fault::Full),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
            return Some(Fault::Permission)
        }
        Some(libc::EIO) | Some(libc::EUCLEAN) => return Some(Fault::Corrupt),
        _ => {}
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => Some(Fault::Full),
        K::PermissionDenied | K::ReadOnlyFilesystem => Some(Fault::Permission),
        K::TimedOut => Some(Fault::Timeout),
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => Some(Fault::Unavailable),
        _ => None,
    }
}

/// The first fault found along an error's chain of causes. An `io::Error`
/// wrapping another error is looked into, since its `source()` skips it.
fn of_chain(e: &(dyn StdError + 'static)) -> Option<Fault> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if let Some(f) = of_io(io) {
                return Some(f);
            }
            if let Some(inner) = io.get_ref() {
                cause = Some(inner as &(dyn StdError + 'static));
                continue;
            }
        }
        if let Some(http) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as H;
            match http.kind() {
                H::Timeout => return Some(Fault::Timeout),
                H::Connect | H::Request | H::Interrupted => return Some(Fault::Unavailable),
                _ => {}
            }
        }
        cause = c.source();
    }
    None
}

/// The fault an object store error stands for, if it is one.
pub fn of_storage(e: &object_store::Error) -> Option<Fault> {
    use object_store::Error as E;
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Some(Fault::Permission),
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => None,
        _ => of_chain(e).or_else(|| of_http_status(&e.to_string())),
    }
}

/// An S3 server's own error status, which object_store only renders as text
/// ("Server returned non-2xx status code: 503 Service Unavailable: ...").
fn of_http_status(text: &str) -> Option<Fault> {
    let (_, rest) = text.split_once("status code: ")?;
    match rest.get(..3)? {
        "507" => Some(Fault::Full),
        "500" | "502" | "503" => Some(Fault::Unavailable),
        "504" => Some(Fault::Timeout),
        _ => None,
    }
}

/// The fault a database error stands for, if it is one.
pub fn of_database(e: &sqlx::Error) -> Option<Fault> {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => Some(Fault::Unavailable),
        E::Io(io) => Some(of_io(io).unwrap_or(Fault::Unavailable)),
        E::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                of_sqlstate(pg.code())
            } else if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                of_sqlite(sqlx::error::DatabaseError::code(lite)?.parse().ok()?)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// PostgreSQL's SQLSTATE codes (appendix A of its manual).
fn of_sqlstate(code: &str) -> Option<Fault> {
    match code {
        "53100" => Some(Fault::Full),        // disk_full
        "57014" => Some(Fault::Timeout),     // query_canceled (statement_timeout)
        "25006" => Some(Fault::Unavailable), // read_only_sql_transaction: a standby
        "42501" => Some(Fault::Permission),  // insufficient_privilege
        "XX001" | "XX002" => Some(Fault::Corrupt),
        // connection exceptions, insufficient resources, operator intervention
        // (admin_shutdown, crash_shutdown, cannot_connect_now), serialization
        // failures and deadlocks: the transaction was rolled back, retry.
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
            Some(Fault::Unavailable)
        }
        "40001" | "40P01" => Some(Fault::Unavailable),
        _ => None,
    }
}

/// SQLite's result codes (the primary code is the low byte of an extended one).
fn of_sqlite(code: i32) -> Option<Fault> {
    match code & 0xff {
        13 => Some(Fault::Full),               // SQLITE_FULL
        5 | 6 => Some(Fault::Timeout),         // SQLITE_BUSY, SQLITE_LOCKED
        3 | 8 | 23 => Some(Fault::Permission), // SQLITE_PERM, _READONLY, _AUTH
        11 | 26 => Some(Fault::Corrupt),       // SQLITE_CORRUPT, _NOTADB
        14 => Some(Fault::Unavailable),        // SQLITE_CANTOPEN
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn local(e: io::Error) -> Error {
        // How the local fast path reports a failed write (see `local.rs`).
        Error::from(object_store::Error::Generic {
            store: "local",
            source: Box::new(e),
        })
    }

    #[test]
    fn enospc_and_edquot_are_storage_full() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let e = local(io::Error::from_raw_os_error(errno));
            assert_eq!(
                e.fault(),
                Some((Backend::Storage, Fault::Full)),
                "errno {errno}"
            );
        }
        let e = local(io::Error::from(io::ErrorKind::StorageFull));
        assert_eq!(e.fault(), Some((Backend::Storage, Fault::Full)));
    }

    #[test]
    fn io_errors_inside_io_errors_are_found() {
        // tokio's blocking helpers wrap the OS error in another io::Error.
        let inner = io::Error::from_raw_os_error(libc::ENOSPC);
        let e = local(io::Error::other(inner));
        assert_eq!(e.fault(), Some((Backend::Storage, Fault::Full)));
    }

    #[test]
    fn permission_and_plain_errors() {
        let e = local(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.fault(), Some((Backend::Storage, Fault::Permission)));
        let e = Error::from(object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        });
        assert_eq!(e.fault(), None, "a missing object is no backend fault");
        let e = local(io::Error::other("a bug of ours"));
        assert_eq!(e.fault(), None);
    }

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn s3_connection_refused_is_storage_unavailable() {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", closed_port()))
            .with_allow_http(true)
            .with_bucket_name("b")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap();
        let err = object_store::ObjectStore::head(&s3, &"x".into())
            .await
            .unwrap_err();
        let e = Error::from(err);
        assert_eq!(
            e.fault(),
            Some((Backend::Storage, Fault::Unavailable)),
            "{e}"
        );
    }

    #[test]
    fn s3_server_errors_by_status() {
        assert_eq!(
            of_http_status("Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(Fault::Unavailable)
        );
        assert_eq!(
            of_http_status("Server returned non-2xx status code: 507 Insufficient Storage"),
            Some(Fault::Full)
        );
        assert_eq!(
            of_http_status("Server returned non-2xx status code: 400 x"),
            None
        );
    }

    #[tokio::test]
    async fn postgres_refused_and_pool_timeout_are_database_unavailable() {
        let url = format!("postgres://u:p@127.0.0.1:{}/db", closed_port());
        let err = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(200))
            .connect(&url)
            .await
            .unwrap_err();
        let e = Error::from(err);
        assert_eq!(
            e.fault(),
            Some((Backend::Database, Fault::Unavailable)),
            "{e}"
        );
        let e = Error::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.fault(), Some((Backend::Database, Fault::Unavailable)));
        let e = Error::from(sqlx::Error::Io(io::ErrorKind::ConnectionReset.into()));
        assert_eq!(e.fault(), Some((Backend::Database, Fault::Unavailable)));
        let e = Error::from(sqlx::Error::RowNotFound);
        assert_eq!(e.fault(), None);
    }

    #[test]
    fn sql_codes() {
        assert_eq!(
            of_sqlstate("57P01"),
            Some(Fault::Unavailable),
            "admin_shutdown"
        );
        assert_eq!(of_sqlstate("53100"), Some(Fault::Full));
        assert_eq!(
            of_sqlstate("23505"),
            None,
            "unique_violation is ours to handle"
        );
        assert_eq!(of_sqlite(13), Some(Fault::Full));
        assert_eq!(
            of_sqlite(5 | (3 << 8)),
            Some(Fault::Timeout),
            "SQLITE_BUSY_TIMEOUT"
        );
    }

    #[tokio::test]
    async fn sqlite_disk_full_is_database_full() {
        // A real SQLITE_FULL: a database capped at its current page count.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v BLOB)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("PRAGMA max_page_count = 3")
            .execute(&pool)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
            .execute(&pool)
            .await
            .unwrap_err();
        let e = Error::from(err);
        assert_eq!(e.fault(), Some((Backend::Database, Fault::Full)), "{e}");
    }
}
