//! What `[[retention]]` reads and deletes: a repository's tags, manifests
//! and manifest links in one view; deletes that only happen if nothing
//! changed since the view (a tag still pointing where it did, a manifest
//! nothing keeps); and `manifest_pulls`, the last pull of each manifest,
//! written in batches.

use sqlx::Row;

use super::{digest_col, outbox, Effects, Meta};
use crate::{Digest, Error, RepoName, Result, Tag};

/// A tag as retention judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFact {
    /// The tag.
    pub name: Tag,
    /// The manifest it points to.
    pub digest: Digest,
    /// When it was last pushed (seconds since the epoch).
    pub pushed_at: i64,
}

/// A manifest as retention judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFact {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The manifest it refers to (a referrer's subject), if any.
    pub subject: Option<Digest>,
    /// When it lost its last tag, or was pushed if it was never tagged
    /// (seconds since the epoch); meaningful only while it has no tag.
    pub untagged_since: i64,
    /// Its last recorded pull (seconds since the epoch).
    pub pulled_at: Option<i64>,
}

/// Everything retention needs to know about one repository.
#[derive(Debug, Clone, Default)]
pub struct RetentionFacts {
    /// Its tags.
    pub tags: Vec<TagFact>,
    /// Its manifests, by digest.
    pub manifests: Vec<ManifestFact>,
    /// `(index, child)`: manifests that reference another manifest of the repository.
    pub links: Vec<(Digest, Digest)>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        detail: format!("{what}: {e}"),
    }
}

impl Meta {
    /// Tags, manifests (with their untagged and pulled times) and manifest
    /// links of `repo`.
    pub async fn retention_facts(&self, repo: &RepoName) -> Result<RetentionFacts> {
        let tags = sqlx::query("SELECT name, digest, updated_at FROM tags WHERE repo = $1")
            .bind(repo.as_str())
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                Ok(TagFact {
                    name: name.parse().map_err(|e| corrupt("tag", e))?,
                    digest: digest_col(r, "digest")?,
                    pushed_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let manifests = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.subject, \
             COALESCE(m.untagged_at, m.created_at) AS since, p.pulled_at \
             FROM manifests m LEFT JOIN manifest_pulls p ON p.repo = m.repo AND p.digest = m.digest \
             WHERE m.repo = $1 ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| {
            let subject: Option<String> = r.try_get("subject")?;
            Ok(ManifestFact {
                digest: digest_col(r, "digest")?,
                media_type: r.try_get("media_type")?,
                size: r.try_get::<i64, _>("size")? as u64,
                subject: subject
                    .map(|s| s.parse().map_err(|e| corrupt("subject", e)))
                    .transpose()?,
                untagged_since: r.try_get("since")?,
                pulled_at: r.try_get("pulled_at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let links = sqlx::query(
            "SELECT r.manifest, r.child FROM manifest_refs r \
             JOIN manifests c ON c.repo = r.repo AND c.digest = r.child WHERE r.repo = $1",
        )
        .bind(repo.as_str())
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok((digest_col(r, "manifest")?, digest_col(r, "child")?)))
        .collect::<Result<Vec<_>>>()?;
        Ok(RetentionFacts {
            tags,
            manifests,
            links,
        })
    }

    /// Delete `tag` if it still points where `fact` says and was not pushed
    /// again since, with `effects.events` in the same transaction. A locked
    /// tag is refused ([`Error::TagLocked`]). Returns whether it went.
    pub async fn untag_if_unchanged(
        &self,
        repo: &RepoName,
        fact: &TagFact,
        effects: Effects<'_>,
    ) -> Result<bool> {
        if effects.is_locked(&fact.name) {
            return Err(Error::TagLocked {
                tag: fact.name.to_string(),
                digest: fact.digest.to_string(),
            });
        }
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM tags WHERE repo = $1 AND name = $2 AND digest = $3 AND updated_at = $4",
        )
        .bind(repo.as_str())
        .bind(fact.name.as_str())
        .bind(fact.digest.to_string())
        .bind(fact.pushed_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        outbox::insert_events(&mut tx, effects.events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Delete a manifest if nothing keeps it: no tag, no manifest of the
    /// repository referencing it (an index), and no subject still in the
    /// repository (a referrer's). Its references and pull time go with it,
    /// `effects.events` in the same transaction. Returns whether it went.
    pub async fn delete_unkept_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        effects: Effects<'_>,
    ) -> Result<bool> {
        let digest_s = digest.to_string();
        let mut tx = self.begin_write().await?;
        // The conditions live in the DELETE itself, checked against the rows
        // as they are when it runs.
        let done = sqlx::query(
            "DELETE FROM manifests WHERE repo = $1 AND digest = $2 \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = manifests.repo AND t.digest = manifests.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = manifests.repo AND r.child = manifests.digest) \
             AND (manifests.subject IS NULL OR NOT EXISTS \
                  (SELECT 1 FROM manifests p WHERE p.repo = manifests.repo AND p.digest = manifests.subject))",
        )
        .bind(repo.as_str())
        .bind(&digest_s)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2",
            "DELETE FROM manifest_pulls WHERE repo = $1 AND digest = $2",
        ] {
            sqlx::query(sql)
                .bind(repo.as_str())
                .bind(&digest_s)
                .execute(&mut *tx)
                .await?;
        }
        outbox::insert_events(&mut tx, effects.events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Record these manifest pulls `(repo, digest, seconds since the epoch)`,
    /// one transaction for the batch; a time never moves back.
    pub async fn record_manifest_pulls(&self, pulls: &[(RepoName, Digest, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (repo, digest, at) in pulls {
            sqlx::query(
                "INSERT INTO manifest_pulls (repo, digest, pulled_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo, digest) DO UPDATE SET pulled_at = excluded.pulled_at \
                 WHERE manifest_pulls.pulled_at < excluded.pulled_at",
            )
            .bind(repo.as_str())
            .bind(digest.to_string())
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forget the pulls of manifests that are gone (deleted another way).
    pub async fn forget_stale_pulls(&self) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM manifest_pulls WHERE NOT EXISTS (SELECT 1 FROM manifests m \
             WHERE m.repo = manifest_pulls.repo AND m.digest = manifest_pulls.digest)",
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}
