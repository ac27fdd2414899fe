//! A manifest through the mirror. By digest: served from the store when
//! present, never asking the upstream; otherwise fetched once (single
//! flight), verified against the digest and stored. By tag: served from
//! the store while the tag's TTL runs; after it, the upstream is asked with
//! a `HEAD` first (the digest only) and the manifest fetched only when the
//! tag moved. When the upstream cannot answer (down, timeout, 429, 5xx) a
//! cached tag is served stale, logged with the reason.
//!
//! Manifests are stored sparse: the blobs and platform manifests they
//! reference are fetched only when a client asks for them, so an index
//! brings only the platforms pulled.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use store::{Algorithm, Digest, Reference, Store};

use super::client::read_bounded;
use super::flight::Joined;
use super::{Mirror, MirrorError, Target, UpstreamError};

/// How a manifest was made ready in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Current: read it from the store.
    Fresh,
    /// The cached copy, because the upstream failed for this reason.
    Stale(String),
}

impl Mirror {
    /// Make `reference` of `t` ready in the store, asking the upstream when needed.
    pub async fn manifest(
        &self,
        store: &Store,
        t: &Target,
        reference: &Reference,
    ) -> Result<Ready, MirrorError> {
        let up = &t.upstream;
        let cached = match store.manifest(&t.local, reference, false).await {
            Ok(m) => Some(m.digest),
            Err(store::Error::ManifestUnknown { .. } | store::Error::NameUnknown { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let tag = match reference {
            Reference::Digest(_) if cached.is_some() => {
                up.count(|m| &m.hits, 1);
                return Ok(Ready::Fresh);
            }
            Reference::Digest(_) => None,
            Reference::Tag(tag) => {
                if cached.is_some() && self.is_fresh(t, tag.as_str()) {
                    up.count(|m| &m.hits, 1);
                    return Ok(Ready::Fresh);
                }
                Some(tag.as_str())
            }
        };
        let key = format!("manifest {}:{reference}", t.local);
        let outcome = match self.flights.join(key) {
            Joined::Leader(leader) => {
                let outcome = self.refresh(store, t, reference, cached.as_ref()).await;
                leader.finish(outcome.clone());
                outcome
            }
            Joined::Follower(follower) => follower.wait().await,
        };
        match outcome {
            Ok(()) => {
                if let Some(tag) = tag {
                    self.mark_fresh(t, tag);
                }
                Ok(Ready::Fresh)
            }
            Err(e) if e.is_unavailable() && cached.is_some() => {
                up.count(|m| &m.stale, 1);
                tracing::warn!(
                    upstream = %up.name,
                    repository = %t.local,
                    reference = %reference,
                    reason = %e,
                    "mirror: serving the cached manifest stale"
                );
                Ok(Ready::Stale(e.to_string()))
            }
            Err(e) => Err(up.failed(e)),
        }
    }

    /// Fetch the referrers of `subject` from the upstream (the referrers
    /// API, else the `sha256-<hex>` tag schema), storing each referrer
    /// manifest so the store's referrers index lists it. Asked again after
    /// the tag TTL; when the upstream cannot answer, what is stored stands.
    pub async fn referrers(
        &self,
        store: &Store,
        t: &Target,
        subject: &Digest,
    ) -> Result<(), MirrorError> {
        let key = format!("referrers {subject}");
        if self.is_fresh(t, &key) {
            return Ok(());
        }
        let up = &t.upstream;
        let listed = match up.client.referrers(&t.remote, subject).await {
            Ok(r) => Ok(r),
            Err(UpstreamError::NotFound) => {
                let tag = subject.to_string().replacen(':', "-", 1);
                up.client.manifest(&t.remote, &tag, Method::GET).await
            }
            Err(e) => Err(e),
        };
        let body = match listed {
            Ok(r) => read_bounded(r, store::manifest::MAX_MANIFEST_SIZE).await,
            Err(e) => Err(e),
        };
        let body = match body {
            Ok(b) => b,
            Err(UpstreamError::NotFound) => {
                self.mark_fresh(t, &key);
                return Ok(());
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(upstream = %up.name, repository = %t.local, subject = %subject,
                    reason = %e, "mirror: serving the stored referrers");
                return Ok(());
            }
            Err(e) => return Err(up.failed(e)),
        };
        let index: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            up.failed(UpstreamError::Invalid {
                what: "the referrers index is not JSON".into(),
            })
        })?;
        let listed = index["manifests"].as_array().cloned().unwrap_or_default();
        for d in listed.iter().take(1000) {
            let Some(digest) = d["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) else {
                continue;
            };
            self.manifest(store, t, &Reference::Digest(digest)).await?;
        }
        self.mark_fresh(t, &key);
        Ok(())
    }

    /// Ask the upstream about `reference` and store what changed.
    async fn refresh(
        &self,
        store: &Store,
        t: &Target,
        reference: &Reference,
        cached: Option<&Digest>,
    ) -> Result<(), UpstreamError> {
        let up = &t.upstream;
        let remote_ref = reference.to_string();
        if let Some(cached) = cached {
            let head = up
                .client
                .manifest(&t.remote, &remote_ref, Method::HEAD)
                .await?;
            let digest = head
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            if digest.as_ref() == Some(cached) {
                return Ok(());
            }
        }
        up.count(|m| &m.misses, 1);
        let response = up
            .client
            .manifest(&t.remote, &remote_ref, Method::GET)
            .await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_bounded(response, store::manifest::MAX_MANIFEST_SIZE).await?;
        let expected = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(_) => match announced.and_then(|a| a.parse::<Digest>().ok()) {
                Some(d) => d,
                None => Digest::of(Algorithm::Sha256, &bytes),
            },
        };
        let actual = Digest::of(expected.algorithm(), &bytes);
        if actual != expected {
            return Err(UpstreamError::Invalid {
                what: format!("the manifest's bytes are {actual}, not {expected}"),
            });
        }
        store
            .put_mirrored_manifest(&t.local, reference, content_type.as_deref(), bytes)
            .await
            .map_err(|e| UpstreamError::Invalid {
                what: format!("the manifest cannot be stored: {e}"),
            })?;
        Ok(())
    }
}
