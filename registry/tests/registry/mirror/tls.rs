//! `ca_file`: an upstream whose TLS certificate is signed by a private CA
//! (made here with openssl) is trusted with the CA's PEM, and refused
//! without it.

use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use super::{bytes_of, get, mirror_with, push_image};
use crate::harness::Registry;

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl {args:?}");
}

/// A CA (`ca.pem`) and a certificate it signed for 127.0.0.1 (`tls.pem`, `tls.key`).
fn private_ca(dir: &Path) {
    let days = ["-days", "1"];
    openssl(
        dir,
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ][..],
            &["-out", "ca.pem", "-subj", "/CN=strata mirror test CA"],
            &days,
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            &[
                "x509", "-req", "-in", "tls.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            ][..],
            &["-CAcreateserial", "-out", "tls.pem", "-extfile", "ext"],
            &days,
        ]
        .concat(),
    );
}

#[tokio::test]
async fn an_upstream_signed_by_a_private_ca_is_trusted_with_ca_file() {
    // Pushed over plain HTTP, then served over HTTPS from the same data.
    let plain = Registry::launch_fresh().start();
    let image = push_image(&plain, "team/app", "v1", vec![bytes_of("tls", 2000)]).await;
    let dir = Removed(plain.kill());
    let dir = &dir.0;
    private_ca(dir);
    let upstream = Registry::launch(dir)
        .data()
        .args(["--tls-cert", "tls.pem", "--tls-key", "tls.key"])
        .https()
        .start();
    let ca = dir.join("ca.pem");
    let trusted = mirror_with(
        &upstream.base,
        &format!(
            "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\nca_file = \"{}\"\n",
            ca.display()
        ),
    );
    let (status, _, body) = get(&trusted, "/v2/up/team/app/manifests/v1").await;
    assert_eq!((status, body), (StatusCode::OK, image.manifest.clone()));
    let (digest, bytes) = &image.layers[0];
    let (status, _, body) = get(&trusted, &format!("/v2/up/team/app/blobs/{digest}")).await;
    assert_eq!((status, &body), (StatusCode::OK, bytes));

    let untrusted = mirror_with(
        &upstream.base,
        "[[upstream]]\nname = \"up\"\nurl = \"UPSTREAM\"\n",
    );
    let (status, _, _) = get(&untrusted, "/v2/up/team/app/manifests/v1").await;
    assert_ne!(status, StatusCode::OK);
}

/// A directory removed when dropped (the killed registry's, kept for the restart).
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
