//! A read-only view of a stack of unpacked layer directories (base first),
//! as overlayfs would show it, without mounting anything: a path is found
//! in the topmost layer that has it, unless a whiteout (a 0:0 character
//! device) or an opaque directory (`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` rootless) above hides
//! it. Symbolic links inside paths are not followed.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Layer directories, base first.
#[derive(Debug, Clone, Default)]
pub struct LayerView {
    layers: Vec<PathBuf>,
}

/// Whether `meta` is an overlay whiteout.
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether directory `path` is marked opaque.
pub fn is_opaque(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // `user.overlay.opaque`: an upper dir of an overlay mounted with
    // `userxattr` (rootless mode).
    [c"trusted.overlay.opaque", c"user.overlay.opaque"]
        .iter()
        .any(|name| crate::sys::fs::lgetxattr(&c, name).is_ok_and(|v| v == b"y"))
}

/// `path` made relative (leading `/` and `.` dropped; `..` kept out by the callers).
pub fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl LayerView {
    /// A view of `layers` (base first).
    pub fn new(layers: Vec<PathBuf>) -> LayerView {
        LayerView { layers }
    }

    /// The layer directories, base first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Where `path` (absolute or relative to `/`) lives, and its metadata.
    pub fn lookup(&self, path: &Path) -> Option<(PathBuf, fs::Metadata)> {
        let rel = relative(path);
        for layer in self.layers.iter().rev() {
            let full = layer.join(&rel);
            if let Ok(meta) = fs::symlink_metadata(&full) {
                return (!is_whiteout(&meta)).then_some((full, meta));
            }
            if self.hides_below(layer, &rel) {
                return None;
            }
        }
        None
    }

    /// Whether something on the way to `rel` in `layer` hides the layers below.
    fn hides_below(&self, layer: &Path, rel: &Path) -> bool {
        let mut at = layer.to_path_buf();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {
                    if is_opaque(&at) {
                        return true;
                    }
                }
                Ok(_) => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// The merged entries of directory `path`: name -> where it lives.
    pub fn read_dir(&self, path: &Path) -> BTreeMap<String, PathBuf> {
        let rel = relative(path);
        let mut out = BTreeMap::new();
        let mut hidden = std::collections::BTreeSet::new();
        for layer in self.layers.iter().rev() {
            let dir = layer.join(&rel);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => break,
                Err(_) => {
                    if self.hides_below(layer, &rel) {
                        break;
                    }
                    continue;
                }
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if out.contains_key(&name) || hidden.contains(&name) {
                        continue;
                    }
                    match e.metadata() {
                        Ok(m) if is_whiteout(&m) => {
                            hidden.insert(name);
                        }
                        Ok(_) => {
                            out.insert(name, e.path());
                        }
                        Err(_) => {}
                    }
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        out
    }

    /// Reads a file through the view, if it is there.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let (real, meta) = self.lookup(path)?;
        meta.is_file().then(|| fs::read(real).ok()).flatten()
    }
}
