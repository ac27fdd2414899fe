//! Registry credentials: `runner login`'s auth file and Docker's
//! `config.json`, both in Docker's format (`auths.<host>.auth`, base64 of
//! `user:password`). The file is written owner-only.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Errors reading or writing an auth file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File I/O failed, or the file is not an auth file.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`), read after `runner login`'s own file.
pub fn docker_config_file() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|dir| dir.join("config.json"))
}

/// Username and password for one registry.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
}

/// The `auths` section of a Docker-style config file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

impl AuthFile {
    /// Reads an auth file; a missing file is empty.
    pub fn load(path: &Path) -> Result<AuthFile> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                action: "parse",
                path: path.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(source) => Err(Error::Io {
                action: "read",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Credentials stored for `host`, if any.
    pub fn get(&self, host: &str) -> Option<Credentials> {
        let keys = [
            host.to_owned(),
            format!("https://{host}"),
            format!("http://{host}"),
            format!("https://{host}/v1/"),
        ];
        let hub = ["https://index.docker.io/v1/".to_owned()];
        let entry = keys
            .iter()
            .chain(hub.iter().filter(|_| host == "docker.io"))
            .find_map(|k| self.auths.get(k))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.as_deref()?)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        })
    }

    /// The registries this file holds credentials for (names only).
    pub fn hosts(&self) -> Vec<String> {
        self.auths
            .iter()
            .filter(|(_, e)| e.auth.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stores credentials for `host`.
    pub fn set(&mut self, host: &str, creds: &Credentials) {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.username, creds.password));
        self.auths
            .insert(host.to_owned(), AuthEntry { auth: Some(auth) });
    }

    /// Writes the file with owner-only permissions.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let io_err = |action| {
            move |source| Error::Io {
                action,
                path: path.to_owned(),
                source,
            }
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err("create"))?;
        }
        let bytes = serde_json::to_vec_pretty(self).expect("auth file serializes");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("write"))?;
        // `mode` applies only to a new file: narrow one an older version made.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(io_err("chmod"))?;
        f.write_all(&bytes).map_err(io_err("write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_credentials_are_owner_only_even_over_an_older_open_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut auth = AuthFile::load(&path).unwrap();
        auth.set(
            "reg.lan:5000",
            &Credentials {
                username: "u".into(),
                password: "p".into(),
            },
        );
        auth.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn auth_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let mut f = AuthFile::default();
        f.set(
            "localhost:5000",
            &Credentials {
                username: "u".into(),
                password: "p:w".into(),
            },
        );
        f.save(&path).unwrap();
        let c = AuthFile::load(&path)
            .unwrap()
            .get("localhost:5000")
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
    }
}
