//! Where a step finds the layers below it unpacked. A layer already in the
//! layer store (`layers/`) is used from there. One this build itself just
//! wrote (a COPY, ADD, WORKDIR or RUN whose cache missed) is unpacked for
//! the build's later steps into memory instead: a tmpfs of the build's own
//! (a [`StepDir`] scratch), detached when the build ends. Such a layer is
//! the one most likely to change again at the next build (the edited file
//! in `COPY . /src`), and a fresh ext4 tree of thousands of small files is
//! what a rebuild would otherwise wait for. Everything else (base images,
//! cached steps, and a fresh layer the memory cannot take) goes to the
//! layer store and stays there for the next build and `runner run`.
//!
//! Freeing a tmpfs of thousands of files takes tens of milliseconds: once
//! the stages are built, the build's own tmpfs and the last RUN's scratch
//! are detached and freed by a short-lived process of their own, so the
//! build ends without waiting for it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::super::step::StepDir;
use super::super::Error;
use super::Builder;
use crate::image::digest::Digest;
use crate::image::layers;
use crate::image::oci::Descriptor;
use crate::image::unpack::{unpack_into, Whiteouts};

/// Fresh layers larger than this go to the layer store.
const MEMORY_LAYER_MAX: u64 = 256 << 20;
/// At most this many bytes of layers (as tars) are held in memory per build.
const MEMORY_BUDGET: u64 = 1 << 30;

/// The layers this build wrote, and those of them unpacked in memory.
#[derive(Default)]
pub(super) struct MemoryLayers {
    /// diff_ids of the layers this build wrote (uncompressed: the blob digest).
    fresh: HashSet<Digest>,
    /// The build's tmpfs, made on first use; `None` inside when no tmpfs
    /// could be mounted (rootless mode, `STRATA_BUILD_SCRATCH=disk`).
    scratch: Option<Option<StepDir>>,
    unpacked: HashMap<Digest, PathBuf>,
    /// The tar bytes of the layers in `unpacked`.
    used: u64,
    /// The last RUN's scratch, already snapshotted: dropped when the next
    /// one is retired, or with the rest once the stages are built.
    retired: Option<StepDir>,
}

impl MemoryLayers {
    /// Drops the tmpfs mounts, leaving their teardown to the background
    /// ([`StepDir::drop_in_background`]: only while no other thread writes
    /// to the store).
    pub(super) fn drop_in_background(self) {
        let dirs = self.retired.into_iter().chain(self.scratch.flatten());
        for dir in dirs {
            dir.drop_in_background();
        }
    }

    /// Keeps a RUN's scratch until the next RUN's (dropping the one before),
    /// so the last one's clean-up runs beside the storing of the image.
    pub(super) fn retire(&mut self, dir: StepDir) {
        self.retired = Some(dir);
    }

    /// Notes a layer this build wrote.
    pub(super) fn wrote(&mut self, diff_id: &Digest) {
        self.fresh.insert(diff_id.clone());
    }
}

impl Builder<'_> {
    /// Unpacked directories of `layers`, base first, unpacking what is missing.
    pub(super) fn layer_dirs(
        &self,
        layers: &[(Descriptor, Digest)],
    ) -> Result<Vec<PathBuf>, Error> {
        let mut dirs = Vec::with_capacity(layers.len());
        let mut missing = Vec::new();
        for (i, (desc, id)) in layers.iter().enumerate() {
            let stored = self.root.layer(id);
            if stored.is_dir() {
                dirs.push(stored);
            } else {
                if let Some(dir) = self.memory_layer(desc, id)? {
                    dirs.push(dir);
                    continue;
                }
                dirs.push(stored);
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let pairs: Vec<(Digest, Digest)> = missing
                .iter()
                .map(|&i| (layers[i].0.digest.clone(), layers[i].1.clone()))
                .collect();
            self.with_store(|store| {
                layers::ensure_layers(self.root, store, &pairs)
                    .map_err(crate::container::Error::from)
            })?;
        }
        Ok(dirs)
    }

    /// The in-memory directory of a layer this build wrote, unpacking it on
    /// first use; `None` for any other layer, or when memory cannot take it.
    fn memory_layer(&self, desc: &Descriptor, id: &Digest) -> Result<Option<PathBuf>, Error> {
        let mut mem = self.memory.borrow_mut();
        if let Some(dir) = mem.unpacked.get(id) {
            return Ok(Some(dir.clone()));
        }
        if !mem.fresh.contains(id)
            || desc.size > MEMORY_LAYER_MAX
            || mem.used + desc.size > MEMORY_BUDGET
        {
            return Ok(None);
        }
        let scratch = mem
            .scratch
            .get_or_insert_with(|| {
                StepDir::for_run(self.root, false)
                    .ok()
                    .filter(|d| d.memory_scratch().is_some())
            })
            .as_ref()
            .and_then(StepDir::memory_scratch);
        let Some(scratch) = scratch else {
            return Ok(None);
        };
        let dir = scratch.join("layers").join(id.hex());
        let unpacked = fs::create_dir_all(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                self.with_store(|store| -> Result<(), crate::container::Error> {
                    let blob = store.open_blob(&desc.digest)?;
                    Ok(unpack_into(blob, &dir, id, Whiteouts::Overlay)?)
                })
                .map_err(|e| e.to_string())
            });
        match unpacked {
            Ok(()) => {
                mem.unpacked.insert(id.clone(), dir.clone());
                mem.used += desc.size;
                Ok(Some(dir))
            }
            Err(_) => {
                // The memory is full (or refused something): the layer store takes it.
                let _ = fs::remove_dir_all(&dir);
                mem.fresh.remove(id);
                Ok(None)
            }
        }
    }
}
