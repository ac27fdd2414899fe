//! `runner push` and `runner tag`: a local image to a registry, and a local
//! image under a second name. A push sends only what the registry lacks:
//! each blob is first asked for (`HEAD`), then mounted from another
//! repository of the same registry that a local image of that registry
//! names it in (cross-repository mount), and only then uploaded; the
//! manifest goes last, as the same bytes (so the digest is the same).

use crate::image::client::{self, Client, Settings};
use crate::image::digest::Digest;
use crate::image::pull::{self, credentials_for};
use crate::image::reference::Reference;
use crate::image::store::{self as image_store, ImageStore};
use crate::paths::Root;

/// Errors pushing or tagging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to the registry failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// Reading credentials failed.
    #[error(transparent)]
    Pull(#[from] pull::Error),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] image_store::Error),
    /// The image is not local.
    #[error("no such image: {0}")]
    NotFound(String),
}

/// What a push did with each blob.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Blobs the registry already had.
    pub existing: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// The manifest's digest.
    pub manifest: Option<Digest>,
}

/// Pushes local image `local` as `remote`.
pub fn push(
    root: &Root,
    store: &ImageStore,
    local: &Reference,
    remote: &Reference,
    settings: &Settings,
) -> Result<Pushed, Error> {
    let record = store
        .get_image(local)?
        .ok_or_else(|| Error::NotFound(local.to_string()))?;
    let (media_type, manifest) = store
        .manifest_bytes(local)?
        .ok_or_else(|| Error::NotFound(local.to_string()))?;
    let creds = credentials_for(root, &remote.registry)?;
    let client = Client::new(remote, settings, creds)?;
    let others: Vec<_> = store
        .list_images()?
        .into_iter()
        .filter_map(|r| {
            let reference: Reference = r.reference.parse().ok()?;
            (reference.registry == remote.registry && reference.repository != remote.repository)
                .then_some((reference.repository, r.layers))
        })
        .collect();
    let mut out = Pushed::default();
    let blobs = record
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.size))
        .chain([(
            record.config.clone(),
            store.read_blob(&record.config)?.len() as u64,
        )]);
    for (digest, size) in blobs {
        if client.has_blob(&digest)? {
            out.existing += 1;
            continue;
        }
        let from = others
            .iter()
            .find(|(_, layers)| layers.iter().any(|l| l.digest == digest))
            .map(|(repo, _)| repo.as_str());
        let location = match client.start_upload(from.map(|f| (&digest, f)))? {
            None => {
                out.mounted += 1;
                continue;
            }
            Some(l) => l,
        };
        client.finish_upload(&location, &digest, size, store.open_blob(&digest)?)?;
        out.uploaded += 1;
    }
    client.put_manifest(&remote.reference_str(), &media_type, &manifest)?;
    out.manifest = Some(record.manifest);
    Ok(out)
}

/// Names local image `src` also `dst`.
pub fn tag(store: &ImageStore, src: &Reference, dst: &Reference) -> Result<(), Error> {
    let (_, manifest) = store
        .manifest_bytes(src)?
        .ok_or_else(|| Error::NotFound(src.to_string()))?;
    store.put_image(dst, &manifest)?;
    Ok(())
}
