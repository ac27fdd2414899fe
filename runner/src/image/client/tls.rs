//! Which scheme a registry is spoken to in, and whom its certificate may be
//! signed by.
//!
//! Like Docker: a host named with `--insecure-registry` gets plain HTTP;
//! a loopback host gets HTTPS first and plain HTTP if that fails for any
//! reason but an untrusted certificate; every other host gets HTTPS only.
//! Certificates are checked against the system roots plus every `*.crt` in
//! `/etc/strata/certs.d/HOST[:PORT]/` and `/etc/docker/certs.d/HOST[:PORT]/`
//! (`ca.crt` by convention); `--certs-dir DIR` replaces both directories.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::errors::{Error, Result};

/// The directories searched for `HOST[:PORT]/ca.crt` by default.
pub const DEFAULT_CERTS_DIRS: [&str; 2] = ["/etc/strata/certs.d", "/etc/docker/certs.d"];

/// How to reach registries: the `--insecure-registry` and `--certs-dir` flags.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Hosts (HOST[:PORT]) spoken to in plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Replaces [`DEFAULT_CERTS_DIRS`] when set.
    pub certs_dir: Option<PathBuf>,
}

impl Settings {
    /// The directories holding `HOST[:PORT]/*.crt`.
    pub fn certs_dirs(&self) -> Vec<PathBuf> {
        match &self.certs_dir {
            Some(d) => vec![d.clone()],
            None => DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// The schemes to try for `host`, in order.
    pub fn schemes(&self, host: &str) -> &'static [&'static str] {
        if self.insecure_registries.iter().any(|h| h == host) {
            &["http"]
        } else if is_loopback(host) {
            &["https", "http"]
        } else {
            &["https"]
        }
    }

    /// Where to put a CA certificate for `host`, for error messages.
    pub fn ca_path_hint(&self, host: &str) -> String {
        self.certs_dirs()
            .iter()
            .map(|d| d.join(host).join("ca.crt").display().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// A TLS configuration trusting the system roots and `host`'s CA files.
    pub fn tls_config(&self, host: &str) -> Result<Arc<rustls::ClientConfig>> {
        let setup = |message: String| Error::TlsSetup {
            host: host.to_owned(),
            message,
        };
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: the private CA may be all we need.
        let system = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(system.certs);
        for dir in self.certs_dirs() {
            for file in crt_files(&dir.join(host)) {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&file)
                    .and_then(|it| it.collect())
                    .map_err(|e| setup(format!("{}: {e}", file.display())))?;
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| setup(format!("{}: {e}", file.display())))?;
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The `*.crt` files of a certs.d host directory, sorted; none if it is missing.
fn crt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Whether `host` (HOST[:PORT]) names this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_try_https_then_http() {
        let s = Settings::default();
        assert_eq!(s.schemes("localhost:5000"), ["https", "http"]);
        assert_eq!(s.schemes("127.0.0.5:80"), ["https", "http"]);
        assert_eq!(s.schemes("[::1]:5000"), ["https", "http"]);
        assert_eq!(s.schemes("registry.example.com"), ["https"]);
        let s = Settings {
            insecure_registries: vec!["reg.lan:5000".to_owned()],
            certs_dir: None,
        };
        assert_eq!(s.schemes("reg.lan:5000"), ["http"]);
    }

    #[test]
    fn certs_dir_replaces_the_default_directories() {
        let s = Settings::default();
        assert_eq!(
            s.ca_path_hint("reg:5000"),
            "/etc/strata/certs.d/reg:5000/ca.crt or /etc/docker/certs.d/reg:5000/ca.crt"
        );
        let s = Settings {
            insecure_registries: Vec::new(),
            certs_dir: Some("/tmp/c".into()),
        };
        assert_eq!(s.ca_path_hint("reg:5000"), "/tmp/c/reg:5000/ca.crt");
    }
}
