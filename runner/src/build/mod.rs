//! `runner build`: a Dockerfile and a context directory to an image in the
//! local store, one layer per RUN, COPY and ADD (and WORKDIR when it makes
//! a directory), with a step cache keyed by content digests.
//!
//! ```text
//! mod.rs    -> exec            BuildOptions, Error, build(): parse, pick the
//!                              stages the target needs, run them, store the image
//! exec      -> parse, expand, copy, fetch, step, snapshot, view, context, cache
//!                              one stage, instruction by instruction
//! parse                        Dockerfile text -> instructions (no expansion)
//! expand                       $v ${v:-w} ... and word splitting, Docker's lexer
//! ignore                       .dockerignore patterns
//! context   -> ignore          the context listed once, hashed via a stat cache
//! copy      -> context, view, layer, archive   COPY/ADD planned (cache summary), then written
//! archive                      ADD of a local tar: its entries under the destination
//! fetch                        ADD of a URL: one bounded GET (the image client's ureq)
//! step      -> container, sandbox, seccomp, cgroup   a RUN in the sandbox
//! snapshot  -> view, layer     the RUN's overlay upper dir -> a layer tar
//! cache                        step key -> the layer it made (<root>/build/cache)
//! history                      `runner history`: the table
//! view                         a stack of unpacked layers read as overlayfs shows it
//! layer                        reproducible layer tars, hashed as written
//! ```
//! The store is closed while a RUN runs (the sandbox `clone`s) and reopened
//! after. Nothing is tagged until every stage succeeded: a failed build
//! leaves at most untagged blobs, which `runner prune` removes.

pub mod archive;
pub mod cache;
pub mod config;
pub mod context;
pub mod copy;
pub mod exec;
pub mod expand;
pub mod fetch;
pub mod git;
pub mod history;
pub mod ignore;
pub mod layer;
pub mod live;
pub mod mount;
pub mod parse;
pub mod snapshot;
pub mod step;
pub mod view;

use std::io;
use std::path::{Path, PathBuf};

use crate::image::client::Settings;
use crate::image::oci::Platform;
use crate::image::reference::Reference;
use crate::paths::Root;
use crate::spec::Network;

pub use exec::build;

/// Errors from a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    /// An instruction is wrong or failed: file and line.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        /// Dockerfile name.
        file: String,
        /// Line.
        line: usize,
        /// The instruction, shortened.
        instruction: String,
        /// What went wrong.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::image::store::Error),
    /// Pulling or running failed.
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    /// Unpacking a layer failed.
    #[error(transparent)]
    Unpack(#[from] crate::image::unpack::Error),
    /// Something about the command line.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

/// How much `build` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every step as plain text on stderr, and while a RUN runs, its time
    /// and last output lines redrawn (a terminal).
    Live,
    /// Every step and the RUN output, as plain text on stderr.
    Plain,
    /// Nothing but errors (and the failing RUN's last lines).
    Quiet,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's name for messages (`Dockerfile`, `-`).
    pub dockerfile_name: String,
    /// Its text.
    pub dockerfile: String,
    /// `.dockerignore` text (the Dockerfile's own, or the context's).
    pub dockerignore: Option<String>,
    /// The context directory.
    pub context: PathBuf,
    /// `-t` references.
    pub tags: Vec<Reference>,
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: pull base images even when local.
    pub pull: bool,
    /// `--platform` (default: the host's).
    pub platform: Option<Platform>,
    /// `--label`.
    pub labels: Vec<(String, String)>,
    /// `--network` for RUN.
    pub network: Network,
    /// How registries are reached.
    pub registries: Settings,
    /// What to print.
    pub progress: Progress,
    /// `--secret` values by id, for `RUN --mount=type=secret`.
    pub secrets: Vec<(String, Vec<u8>)>,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest's digest.
    pub manifest: crate::image::digest::Digest,
    /// The config's digest (Docker's image id).
    pub config: crate::image::digest::Digest,
    /// Steps run / taken from the cache.
    pub ran: usize,
    /// Steps found in the cache.
    pub cached: usize,
}

/// Reads `<dockerfile>.dockerignore` beside the Dockerfile, else the
/// context's `.dockerignore`.
pub fn find_dockerignore(dockerfile: Option<&Path>, context: &Path) -> Option<String> {
    if let Some(df) = dockerfile {
        let mut own = df.as_os_str().to_owned();
        own.push(".dockerignore");
        if let Ok(t) = std::fs::read_to_string(PathBuf::from(own)) {
            return Some(t);
        }
    }
    std::fs::read_to_string(context.join(".dockerignore")).ok()
}

/// The root of the build cache records (for `builder prune`).
pub fn remove_cache(root: &Root) -> io::Result<usize> {
    Ok(cache::remove_all(root)? + exec::mounts::remove_cache_mounts(root)?)
}
