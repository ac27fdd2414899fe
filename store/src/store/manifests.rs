//! Manifests: push (validate, check what they reference, store the bytes as a
//! blob, record rows and tags), read (bytes cached once verified), delete,
//! and the referrers of a subject.

use bytes::Bytes;

use super::Store;
use crate::manifest::{self, Descriptor, RefKind};
use crate::meta::Checks;
use crate::{layout, Algorithm, Digest, Effects, Error, Reference, RepoName, Result, Tag};

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    /// Digest of the stored manifest.
    pub digest: Digest,
    /// Its subject, when it has one.
    pub subject: Option<Digest>,
    /// The tags now pointing at it.
    pub tags: Vec<Tag>,
}

/// A manifest as read back.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Digest of the manifest bytes.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The exact bytes pushed, unless only metadata was asked for.
    pub bytes: Option<Bytes>,
}

/// Where the blobs a manifest references must be.
#[derive(Clone, Copy)]
enum Refs<'a> {
    /// In the repository.
    Required,
    /// Anywhere or nowhere yet (a sparse push, a mirror's copy).
    Sparse,
    /// In the repository, or in this one to be moved from.
    AdoptFrom(&'a RepoName),
}

impl Store {
    /// Validate and store a manifest, then point `reference` (if a tag) and `extra_tags` at it.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PutManifest> {
        self.put_manifest_with(
            repo,
            reference,
            content_type,
            bytes,
            extra_tags,
            Effects::default(),
        )
        .await
    }

    /// [`Store::put_manifest`], with tags that may not move and events
    /// committed with the push ([`Effects`]).
    pub async fn put_manifest_with(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
        effects: Effects<'_>,
    ) -> Result<PutManifest> {
        self.store_manifest(
            repo,
            reference,
            (content_type, bytes),
            extra_tags,
            if self.allow_sparse {
                Refs::Sparse
            } else {
                Refs::Required
            },
            effects,
        )
        .await
    }

    /// Store a manifest as [`Store::put_manifest`] does, for a local client
    /// that stages what it downloads or builds in repository `from`: each
    /// blob it references that `repo` lacks must be in `from`, and every
    /// referenced blob `from` holds moves from there into `repo` in the
    /// manifest's own transaction (one commit for the whole image).
    pub async fn put_manifest_adopting(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        from: &RepoName,
    ) -> Result<PutManifest> {
        self.store_manifest(
            repo,
            reference,
            (content_type, bytes),
            &[],
            Refs::AdoptFrom(from),
            Effects::default(),
        )
        .await
    }

    /// Store a manifest fetched from an upstream registry (a mirror's copy):
    /// validated and verified like a push, but the blobs and child manifests
    /// it references may come later, one by one, as clients ask for them.
    pub async fn put_mirrored_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifest> {
        self.store_manifest(
            repo,
            reference,
            (content_type, bytes),
            &[],
            Refs::Sparse,
            Effects::default(),
        )
        .await
    }

    /// Validate and store `(content type, bytes)`; see [`Store::put_manifest_with`].
    async fn store_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        (content_type, bytes): (Option<&str>, Bytes),
        extra_tags: &[Tag],
        refs: Refs<'_>,
        effects: Effects<'_>,
    ) -> Result<PutManifest> {
        if bytes.len() > manifest::MAX_MANIFEST_SIZE {
            return Err(Error::ManifestTooLarge {
                size: bytes.len(),
                limit: manifest::MAX_MANIFEST_SIZE,
            });
        }
        let parsed = manifest::parse(content_type, &bytes)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        self.check_refs(repo, &parsed.refs, refs).await?;
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let Reference::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        tags.dedup();
        let _gate = self.gc_gate.read().await;
        self.put_small_blob(&digest, bytes.clone()).await?;
        self.meta
            .put_manifest(
                repo,
                (&digest, bytes.len() as u64),
                &parsed,
                &tags,
                Checks {
                    require_refs: !matches!(refs, Refs::Sparse),
                    quotas: &self.quotas_for(repo),
                    adopt_from: match refs {
                        Refs::AdoptFrom(from) => Some(from),
                        Refs::Required | Refs::Sparse => None,
                    },
                },
                effects,
            )
            .await?;
        Ok(PutManifest {
            digest,
            subject: parsed.subject,
            tags,
        })
    }

    /// Check each reference against what `repo` holds: a size other than the
    /// stored content's is refused always; absent content unless `rule` is
    /// [`Refs::Sparse`]. Only `repo` is looked at (and the repository blobs
    /// are adopted from), never content another repository holds.
    async fn check_refs(
        &self,
        repo: &RepoName,
        refs: &[(Digest, RefKind, u64)],
        rule: Refs<'_>,
    ) -> Result<()> {
        for (digest, kind, declared) in refs {
            let stored = match kind {
                // Whether a staged blob is there is for the manifest's own
                // transaction to say: a racing put of the same image may move
                // it from `from` into `repo` between two looks from here.
                RefKind::Blob => match rule {
                    Refs::AdoptFrom(from) => match self.meta.repo_blob_size(from, digest).await? {
                        None => match self.meta.repo_blob_size(repo, digest).await? {
                            None => continue,
                            held => held,
                        },
                        staged => staged,
                    },
                    Refs::Required | Refs::Sparse => self.meta.repo_blob_size(repo, digest).await?,
                },
                RefKind::Manifest => self.meta.manifest(repo, digest).await?.map(|m| m.size),
                RefKind::ForeignBlob => continue,
            };
            match stored {
                Some(stored) if stored != *declared => {
                    return Err(Error::DescriptorSizeMismatch {
                        digest: digest.clone(),
                        declared: *declared,
                        stored,
                    })
                }
                None if !matches!(rule, Refs::Sparse) => {
                    return Err(Error::ManifestBlobUnknown {
                        digest: digest.clone(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Resolve a manifest by tag or digest; with `with_bytes`, also read its bytes.
    /// [`Error::NameUnknown`] when the repository holds nothing at all.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_bytes: bool,
    ) -> Result<StoredManifest> {
        let row = match reference {
            Reference::Tag(t) => self.meta.tagged_manifest(repo, t).await?,
            Reference::Digest(d) => self.meta.manifest(repo, d).await?,
        };
        let Some(row) = row else {
            if !self.meta.repo_exists(repo).await? {
                return Err(Error::NameUnknown {
                    name: repo.to_string(),
                });
            }
            return Err(Error::ManifestUnknown {
                reference: reference.to_string(),
            });
        };
        let bytes = if with_bytes {
            Some(self.manifest_bytes(&row.digest).await?)
        } else {
            None
        };
        Ok(StoredManifest {
            digest: row.digest,
            media_type: row.media_type,
            size: row.size,
            bytes,
        })
    }

    /// A manifest's bytes: immutable under their digest, so kept in memory
    /// once read and verified. Whether the manifest is still visible is the
    /// caller's lookup, never the cache's.
    async fn manifest_bytes(&self, digest: &Digest) -> Result<Bytes> {
        if let Some(bytes) = self.manifests.get(digest) {
            return Ok(bytes);
        }
        let bytes = self.objects.read_all(&layout::blob(digest)).await?;
        if Digest::of(digest.algorithm(), &bytes) == *digest {
            self.manifests.insert(digest, &bytes);
        }
        Ok(bytes)
    }

    /// Delete a tag, or a manifest (with every tag pointing at it) by digest.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        self.delete_manifest_with(repo, reference, Effects::default())
            .await
    }

    /// [`Store::delete_manifest`], refusing to remove a locked tag (or a
    /// manifest one points to) and committing `effects.events` with it.
    pub async fn delete_manifest_with(
        &self,
        repo: &RepoName,
        reference: &Reference,
        effects: Effects<'_>,
    ) -> Result<()> {
        let existed = match reference {
            Reference::Tag(t) => self.meta.delete_tag(repo, t, effects).await?,
            Reference::Digest(d) => self.meta.delete_manifest(repo, d, &[], effects).await?,
        };
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                reference: reference.to_string(),
            })
        }
    }

    /// Delete manifest `digest` of `repo` (with every tag pointing at it)
    /// and unlink `blobs` from `repo` in the same commit: for a local client
    /// that keeps no untagged content, the blobs only that manifest used.
    pub async fn delete_manifest_unlinking(
        &self,
        repo: &RepoName,
        digest: &Digest,
        blobs: &[Digest],
    ) -> Result<()> {
        if self
            .meta
            .delete_manifest(repo, digest, blobs, Effects::default())
            .await?
        {
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                reference: digest.to_string(),
            })
        }
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let rows = self.meta.referrers(repo, subject, artifact_type).await?;
        rows.into_iter()
            .map(|r| {
                let annotations = match r.annotations {
                    Some(text) => {
                        Some(serde_json::from_str(&text).map_err(|e| Error::Corrupt {
                            detail: format!("annotations of {}: {e}", r.digest),
                        })?)
                    }
                    None => None,
                };
                Ok(Descriptor {
                    media_type: r.media_type,
                    digest: r.digest,
                    size: r.size,
                    artifact_type: r.artifact_type,
                    annotations,
                    platform: None,
                })
            })
            .collect()
    }
}
