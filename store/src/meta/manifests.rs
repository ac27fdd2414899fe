//! The `manifests` table and `manifest_refs` (what each manifest references);
//! a push also records the blob row of its bytes and the tags it sets.

use sqlx::Row;

use super::{digest_col, now, outbox, Effects, Meta};
use crate::manifest::{ParsedManifest, RefKind};
use crate::quota::Quota;
use crate::{Digest, Error, RepoName, Result, Tag};

/// A manifest row.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    /// Digest of the manifest bytes.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A manifest that refers to a subject, as the referrers API lists it.
#[derive(Debug, Clone)]
pub struct ReferrerRow {
    /// Digest of the referring manifest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations, as JSON text.
    pub annotations: Option<String>,
}

fn manifest_row(r: &sqlx::any::AnyRow) -> Result<ManifestRow> {
    Ok(ManifestRow {
        digest: digest_col(r, "digest")?,
        media_type: r.try_get("media_type")?,
        size: r.try_get::<i64, _>("size")? as u64,
    })
}

/// What a manifest push must verify inside its transaction.
pub struct Checks<'a> {
    /// Every referenced blob must still be stored (not a sparse push).
    pub require_refs: bool,
    /// The budgets the manifest's bytes must fit in.
    pub quotas: &'a [Quota],
    /// Blobs the manifest references that this repository holds move from
    /// it into `repo` (linked there unless held already, unlinked here), in
    /// the push's transaction (a local client's staging repository).
    pub adopt_from: Option<&'a RepoName>,
}

impl Meta {
    /// A manifest of `repo` by digest.
    pub async fn manifest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ManifestRow>> {
        let row = sqlx::query(
            "SELECT digest, media_type, size FROM manifests WHERE repo = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| manifest_row(&r)).transpose()
    }

    /// The manifest a tag points to.
    pub async fn tagged_manifest(&self, repo: &RepoName, tag: &Tag) -> Result<Option<ManifestRow>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.size FROM tags t \
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest \
             WHERE t.repo = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| manifest_row(&r)).transpose()
    }

    /// Record a manifest whose bytes are stored, with its references and tags, in one transaction.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        (digest, size): (&Digest, u64),
        parsed: &ParsedManifest,
        tags: &[Tag],
        checks: Checks<'_>,
        effects: Effects<'_>,
    ) -> Result<()> {
        let Checks {
            require_refs,
            quotas,
            adopt_from,
        } = checks;
        let now = now();
        let digest_s = digest.to_string();
        let mut tx = self.begin_write().await?;
        self.admit(&mut tx, quotas, repo, (digest, size)).await?;
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at, last_access) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (digest) DO UPDATE SET last_access = excluded.last_access",
        )
        .bind(&digest_s)
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO manifests (repo, digest, media_type, size, artifact_type, subject, annotations, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (repo, digest) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(&digest_s)
        .bind(&parsed.media_type)
        .bind(size as i64)
        .bind(parsed.artifact_type.clone())
        .bind(parsed.subject.as_ref().map(|s| s.to_string()))
        .bind(parsed.annotations.clone())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (child, kind, _) in &parsed.refs {
            // Refresh the referenced blob, so a concurrent GC (which only takes
            // blobs idle past its grace period) leaves it alone; and when refs
            // must exist, fail if a GC removed it since they were checked.
            let touched = sqlx::query("UPDATE blobs SET last_access = $1 WHERE digest = $2")
                .bind(now)
                .bind(child.to_string())
                .execute(&mut *tx)
                .await?;
            if require_refs && *kind == RefKind::Blob && touched.rows_affected() == 0 {
                return Err(Error::ManifestBlobUnknown {
                    digest: child.clone(),
                });
            }
            if let (Some(from), RefKind::Blob) = (adopt_from, kind) {
                self.adopt_blob(&mut tx, quotas, (repo, from), child, now)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO manifest_refs (repo, manifest, child) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, manifest, child) DO NOTHING",
            )
            .bind(repo.as_str())
            .bind(&digest_s)
            .bind(child.to_string())
            .execute(&mut *tx)
            .await?;
        }
        for tag in tags {
            if effects.is_locked(tag) {
                // Set only if absent; then it must be ours. On PostgreSQL
                // the insert waits for a racing push of the same tag.
                sqlx::query(
                    "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (repo, name) DO NOTHING",
                )
                .bind(repo.as_str())
                .bind(tag.as_str())
                .bind(&digest_s)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query("SELECT digest FROM tags WHERE repo = $1 AND name = $2")
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                let current: String = row.try_get(0)?;
                if current != digest_s {
                    return Err(Error::TagLocked {
                        tag: tag.to_string(),
                        digest: current,
                    });
                }
                continue;
            }
            sqlx::query(
                "INSERT INTO tags (repo, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(&digest_s)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        outbox::insert_events(&mut tx, effects.events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Move `digest` from `from` into `repo` inside the caller's
    /// transaction, if `from` holds it (`repo` may hold it already); an
    /// error if neither does. `from` is looked at first: a racing put of the
    /// same image moves blobs only from there into `repo`, so a blob `from`
    /// no longer holds is in `repo` by the time `repo` is looked at.
    async fn adopt_blob(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        quotas: &[Quota],
        (repo, from): (&RepoName, &RepoName),
        digest: &Digest,
        now: i64,
    ) -> Result<()> {
        let digest_s = digest.to_string();
        let held = |r: &RepoName| {
            sqlx::query(
                "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest \
                 WHERE r.repo = $1 AND r.digest = $2",
            )
            .bind(r.as_str().to_owned())
            .bind(digest_s.clone())
        };
        let Some(row) = held(from).fetch_optional(&mut **tx).await? else {
            return match held(repo).fetch_optional(&mut **tx).await? {
                Some(_) => Ok(()),
                None => Err(Error::ManifestBlobUnknown {
                    digest: digest.clone(),
                }),
            };
        };
        if held(repo).fetch_optional(&mut **tx).await?.is_none() {
            let size = row.try_get::<i64, _>(0)? as u64;
            self.admit(tx, quotas, repo, (digest, size)).await?;
            sqlx::query("INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3)")
                .bind(repo.as_str())
                .bind(&digest_s)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
            .bind(from.as_str())
            .bind(&digest_s)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Remove a manifest, its references and the tags pointing at it, and
    /// unlink `blobs` from `repo` with it (those only it used, for a client
    /// that keeps no untagged content). Returns whether it existed.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        blobs: &[Digest],
        effects: Effects<'_>,
    ) -> Result<bool> {
        let digest_s = digest.to_string();
        let mut tx = self.begin_write().await?;
        if effects.locked.is_some() {
            let rows = sqlx::query("SELECT name FROM tags WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(&digest_s)
                .fetch_all(&mut *tx)
                .await?;
            for r in &rows {
                let name: String = r.try_get(0)?;
                if name.parse::<Tag>().is_ok_and(|t| effects.is_locked(&t)) {
                    return Err(Error::TagLocked {
                        tag: name,
                        digest: digest_s,
                    });
                }
            }
        }
        for sql in [
            "DELETE FROM tags WHERE repo = $1 AND digest = $2",
            "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
        ] {
            sqlx::query(sql)
                .bind(repo.as_str())
                .bind(&digest_s)
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM manifests WHERE repo = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(&digest_s)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for blob in blobs {
            sqlx::query("DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(blob.to_string())
                .execute(&mut *tx)
                .await?;
        }
        outbox::insert_events(&mut tx, effects.events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Manifests of `repo` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRow>> {
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
             WHERE repo = $1 AND subject = $2 AND ($3 = '' OR artifact_type = $3) ORDER BY digest",
        )
        .bind(repo.as_str())
        .bind(subject.to_string())
        .bind(artifact_type.unwrap_or(""))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReferrerRow {
                    digest: digest_col(r, "digest")?,
                    media_type: r.try_get("media_type")?,
                    size: r.try_get::<i64, _>("size")? as u64,
                    artifact_type: r.try_get("artifact_type")?,
                    annotations: r.try_get("annotations")?,
                })
            })
            .collect()
    }
}
