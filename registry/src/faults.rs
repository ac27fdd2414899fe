//! Backend faults as the operator sees them: the low-space reserve that
//! refuses new uploads before a local disk is full, the free-space gauges,
//! and the counters of refusals for lack of space and of unavailable
//! backends (fed from each error response's [`Code`], see [`crate::error`]).
//!
//! The reserve is `[limits] free_space_reserve_bytes` (flag
//! `--free-space-reserve`, `STRATA_FREE_SPACE_RESERVE`); by default 1 GiB or
//! 5% of the filesystem, whichever is smaller, so small disks keep most of
//! their room; 0 turns it off. Under it a new upload (`POST`) gets 507 while
//! uploads already in flight, manifests, deletes and GC go on, so what has
//! started can finish and space can be freed. It watches the filesystem of a
//! local store only: an object store's space is its operator's to watch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use store::Store;

use crate::error::{ApiError, Code};

/// The default reserve's upper bound: 1 GiB.
const DEFAULT_RESERVE_MAX: u64 = 1 << 30;

/// The reserve in bytes on a filesystem of `total` bytes: `configured`, or
/// the smaller of 1 GiB and 5% of it.
pub fn reserve_for(configured: Option<u64>, total: u64) -> u64 {
    configured.unwrap_or((total / 20).min(DEFAULT_RESERVE_MAX))
}

/// The reserve, the last measure of free space, and the fault counters.
#[derive(Default)]
pub struct Faults {
    configured: Option<u64>,
    /// Whether the store is local (a measure succeeded at least once).
    measured: AtomicBool,
    free: AtomicU64,
    reserve: AtomicU64,
    low: AtomicBool,
    storage_full: AtomicU64,
    storage_unavailable: AtomicU64,
    database_unavailable: AtomicU64,
}

impl Faults {
    /// Faults with the configured reserve (`None`: the default).
    pub fn new(configured: Option<u64>) -> Faults {
        Faults {
            configured,
            ..Faults::default()
        }
    }

    /// Measure the store's free space now and update the gauges; true when
    /// it is under the reserve. Logs when it goes under the reserve or back.
    pub async fn low_space(&self, store: &Store) -> bool {
        let space = match store.disk_space().await {
            Ok(Some(space)) => space,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure the storage's free space");
                return false;
            }
        };
        let reserve = reserve_for(self.configured, space.total);
        self.free.store(space.available, Ordering::Relaxed);
        self.reserve.store(reserve, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
        let low = space.available < reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(
                    free_bytes = space.available,
                    reserve_bytes = reserve,
                    "free space below the reserve: new uploads are refused (507) until space \
                     is freed"
                );
            } else {
                tracing::info!(
                    free_bytes = space.available,
                    reserve_bytes = reserve,
                    "free space back above the reserve: new uploads are accepted"
                );
            }
        }
        low
    }

    /// Admit a new upload, or refuse it with 507 while free space is under
    /// the reserve.
    pub async fn admit_upload(&self, store: &Store) -> Result<(), ApiError> {
        if self.low_space(store).await {
            return Err(ApiError::new(Code::StorageFull).detail(
                "free space is below the registry's reserve: uploads in progress may finish, \
                 new ones are refused until space is freed",
            ));
        }
        Ok(())
    }

    /// Count an error response by its code.
    pub fn count(&self, code: Code) {
        let counter = match code {
            Code::StorageFull => &self.storage_full,
            Code::StorageUnavailable => &self.storage_unavailable,
            Code::DatabaseUnavailable => &self.database_unavailable,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters, and the gauges once a local store was measured, in
    /// Prometheus' text format.
    pub fn render(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = format!(
            "# HELP strata_storage_full_total Uploads refused or failed for lack of space \
             (no space left, or free space under the reserve).\n\
             # TYPE strata_storage_full_total counter\n\
             strata_storage_full_total {}\n\
             # HELP strata_backend_unavailable_total Requests answered 503 because a backend \
             could not be reached, timed out or refused access.\n\
             # TYPE strata_backend_unavailable_total counter\n\
             strata_backend_unavailable_total{{backend=\"storage\"}} {}\n\
             strata_backend_unavailable_total{{backend=\"database\"}} {}\n",
            n(&self.storage_full),
            n(&self.storage_unavailable),
            n(&self.database_unavailable),
        );
        if self.measured.load(Ordering::Relaxed) {
            out.push_str(&format!(
                "# HELP strata_storage_free_bytes Bytes free on the local storage's filesystem.\n\
                 # TYPE strata_storage_free_bytes gauge\n\
                 strata_storage_free_bytes {}\n\
                 # HELP strata_storage_reserve_bytes Free bytes under which new uploads are \
                 refused.\n\
                 # TYPE strata_storage_reserve_bytes gauge\n\
                 strata_storage_reserve_bytes {}\n",
                n(&self.free),
                n(&self.reserve),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reserve_is_the_smaller_of_1_gib_and_5_percent() {
        assert_eq!(reserve_for(None, 100 << 20), 5 << 20);
        assert_eq!(reserve_for(None, 1 << 40), 1 << 30);
        assert_eq!(reserve_for(Some(0), 1 << 40), 0, "0 turns it off");
        assert_eq!(reserve_for(Some(7), 1 << 40), 7);
    }

    #[tokio::test]
    async fn a_local_store_is_measured_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&store::StoreConfig::local(dir.path()))
            .await
            .unwrap();
        let faults = Faults::new(Some(u64::MAX));
        assert!(
            faults.low_space(&store).await,
            "no disk has u64::MAX bytes free"
        );
        let refused = faults.admit_upload(&store).await.unwrap_err();
        assert_eq!(refused.code(), Code::StorageFull);
        faults.count(refused.code());
        let text = faults.render();
        assert!(text.contains("strata_storage_full_total 1"), "{text}");
        assert!(text.contains(&format!("strata_storage_reserve_bytes {}", u64::MAX)));
        assert!(text.contains("strata_storage_free_bytes "));
        let open = Faults::new(Some(0));
        assert!(open.admit_upload(&store).await.is_ok());
    }
}
