//! Quota usage and admission: the distinct bytes a set of repositories
//! holds (`repo_blobs` ∪ `manifests`, joined to `blobs` for sizes), read on
//! its own for reports, and inside a write's transaction, under the quota's
//! lock, to admit or refuse the bytes that write adds.

use std::collections::HashMap;

use sqlx::Row;

use super::{outbox, Meta};
use crate::quota::{Crossing, Quota, Usage};
use crate::{Digest, Error, RepoName, Result};

/// One (repository, digest) a quota may count, with the digest's size.
pub struct Holding {
    repo: String,
    digest: String,
    size: u64,
}

/// Every blob and manifest held by repositories whose names start with `$2`
/// (a prefix compare, not a range: PostgreSQL's collations may not sort '/'
/// before '0').
const HOLDINGS: &str = "SELECT h.repo, h.digest, b.size FROM \
     (SELECT repo, digest FROM repo_blobs UNION SELECT repo, digest FROM manifests) AS h \
     JOIN blobs b ON b.digest = h.digest \
     WHERE substr(h.repo, 1, CAST($1 AS INTEGER)) = $2";

fn holding(r: &sqlx::any::AnyRow) -> Result<Holding> {
    Ok(Holding {
        repo: r.try_get(0)?,
        digest: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
    })
}

/// The usage of `quota` from rows of [`HOLDINGS`] for its prefix.
pub fn tally(quota: &Quota, rows: &[Holding]) -> Usage {
    let mut distinct: HashMap<&str, u64> = HashMap::new();
    let mut repos: HashMap<&str, u64> = HashMap::new();
    let mut logical = 0;
    for h in rows.iter().filter(|h| (quota.covers)(&h.repo)) {
        distinct.insert(&h.digest, h.size);
        *repos.entry(&h.repo).or_default() += h.size;
        logical += h.size;
    }
    let mut repos: Vec<(String, u64)> = repos.into_iter().map(|(r, b)| (r.to_owned(), b)).collect();
    repos.sort();
    Usage {
        used: distinct.values().sum(),
        logical,
        repos,
    }
}

/// Usage of `quota` before and after `digest` (of `size` bytes) joins it,
/// given its holdings; [`Error::QuotaExceeded`] if that goes over budget. A
/// digest some covered repository already holds adds nothing.
pub fn admission(quota: &Quota, rows: &[Holding], digest: &str, size: u64) -> Result<(u64, u64)> {
    let held = rows
        .iter()
        .any(|h| h.digest == digest && (quota.covers)(&h.repo));
    let used = tally(quota, rows).used;
    let adding = if held { 0 } else { size };
    if used + adding > quota.max_bytes && adding > 0 {
        return Err(Error::QuotaExceeded {
            quota: quota.name.clone(),
            used,
            adding,
            limit: quota.max_bytes,
        });
    }
    Ok((used, used + adding))
}

/// The advisory lock key of a quota: FNV-1a of its name.
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"strata-quota:".iter().chain(name.as_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl Meta {
    /// Every holding of repositories whose names start with `prefix`.
    pub async fn holdings(&self, prefix: &str) -> Result<Vec<Holding>> {
        let rows = sqlx::query(HOLDINGS)
            .bind(prefix.len() as i64)
            .bind(prefix)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(holding).collect()
    }

    /// Admit `digest` (of `size` bytes) into `repo` under each of `quotas`,
    /// inside the write's transaction: refuse with [`Error::QuotaExceeded`]
    /// if one would go over its budget, and put the warning events of the
    /// thresholds this write crosses in the outbox. Call it before the
    /// write's own inserts; on PostgreSQL it holds each quota's lock until
    /// the transaction ends.
    pub(super) async fn admit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        quotas: &[Quota],
        repo: &RepoName,
        (digest, size): (&Digest, u64),
    ) -> Result<()> {
        let digest = digest.to_string();
        if self.is_sqlite() && !quotas.is_empty() {
            // Take the write lock before reading: a read transaction cannot
            // always become a write one while another connection writes.
            sqlx::query("DELETE FROM blobs WHERE 1 = 0")
                .execute(&mut **tx)
                .await?;
        }
        for quota in quotas {
            if !self.is_sqlite() {
                // Wrapped: the Any driver cannot decode pg_advisory_xact_lock's `void`.
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(lock_key(&quota.name))
                    .execute(&mut **tx)
                    .await?;
            }
            let rows = sqlx::query(HOLDINGS)
                .bind(quota.prefix.len() as i64)
                .bind(quota.prefix.as_str())
                .fetch_all(&mut **tx)
                .await?;
            let rows = rows.iter().map(holding).collect::<Result<Vec<_>>>()?;
            let (used, after) = admission(quota, &rows, &digest, size)?;
            let crossed = quota.warn_bytes.is_some_and(|w| used < w && after >= w);
            if let (true, Some(events)) = (crossed, &quota.on_warning) {
                let events = events(&Crossing {
                    quota: quota.name.clone(),
                    repo: repo.to_string(),
                    used: after,
                    limit: quota.max_bytes,
                });
                outbox::insert_events(tx, &events).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_counts_once_per_quota_and_once_per_repository_in_logical() {
        let quota = Quota {
            name: "team/**".into(),
            prefix: "team/".into(),
            covers: std::sync::Arc::new(|r: &str| r != "team/excluded"),
            max_bytes: 100,
            warn_bytes: None,
            on_warning: None,
        };
        let row = |repo: &str, digest: &str, size| Holding {
            repo: repo.into(),
            digest: digest.into(),
            size,
        };
        let rows = [
            row("team/a", "d1", 10),
            row("team/b", "d1", 10),
            row("team/b", "d2", 5),
            row("team/excluded", "d3", 50),
        ];
        let usage = tally(&quota, &rows);
        assert_eq!(usage.used, 15);
        assert_eq!(usage.logical, 25);
        assert_eq!(usage.saving(), 10);
        assert_eq!(
            usage.repos,
            [("team/a".to_owned(), 10), ("team/b".to_owned(), 15)]
        );
        assert_ne!(lock_key("a/**"), lock_key("b/**"));
    }
}
