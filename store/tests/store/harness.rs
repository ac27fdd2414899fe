//! What every test module of this binary shares: the backends a store can
//! be opened on, unique names, and body and read-back helpers.

use bytes::Bytes;
use futures::StreamExt;
use store::{Digest, RepoName, Store, StoreConfig};

/// Object storage URL (`s3://bucket/prefix`) of the S3 backend; the endpoint
/// and credentials come from the usual `AWS_*` variables.
pub const S3_URL_ENV: &str = "STRATA_TEST_S3_URL";
/// Database URL (`postgres://...`) of the PostgreSQL backend.
pub const PG_URL_ENV: &str = "STRATA_TEST_PG_URL";

/// Where a test's store lives; a local one is removed when dropped.
pub struct Backend {
    /// How to open the store (again, for a second process's view).
    pub config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// Files and SQLite in a fresh temporary directory.
    pub fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            config: StoreConfig::local(dir.path()),
            _dir: Some(dir),
        }
    }

    /// S3 and PostgreSQL as the environment names them. Panics when it does
    /// not: these tests are `#[ignore]`d, and whoever runs them with
    /// `--ignored` must provide both (conformance/scaleout.sh does).
    pub fn s3_postgres() -> Backend {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: the S3 + PostgreSQL contract tests need {S3_URL_ENV} and {PG_URL_ENV} (conformance/scaleout.sh sets them)")
            })
        };
        Backend {
            config: StoreConfig {
                storage: var(S3_URL_ENV),
                database: var(PG_URL_ENV),
                allow_sparse: false,
            },
            _dir: None,
        }
    }

    /// Open a store on this backend.
    pub async fn open(&self) -> Store {
        Store::open(&self.config).await.unwrap()
    }
}

/// A name no other test (or earlier run on a shared backend) uses.
pub fn unique() -> String {
    store::UploadId::new().to_string()
}

/// A repository `contract/<unique>/<name>`.
pub fn repo(name: &str) -> RepoName {
    format!("contract/{}/{name}", unique()).parse().unwrap()
}

/// A request body made of `parts`.
pub fn body(parts: &[&'static [u8]]) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    owned_body(parts.iter().map(|p| Bytes::from_static(p)).collect())
}

/// A request body made of owned `parts`.
pub fn owned_body(parts: Vec<Bytes>) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::iter(parts.into_iter().map(Ok).collect::<Vec<_>>())
}

/// A blob's bytes, read back whole.
pub async fn read_back(store: &Store, digest: &Digest) -> Vec<u8> {
    read_range(store, digest, None).await
}

/// A blob's bytes, or a range of them.
pub async fn read_range(
    store: &Store,
    digest: &Digest,
    range: Option<std::ops::Range<u64>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = store.read_blob(digest, range).await.unwrap();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}
