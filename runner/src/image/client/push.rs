//! The push half of the client: blob existence, cross-repository mounts,
//! monolithic blob uploads and manifest puts. Auth as for pulls: a 401's
//! challenge is answered once (the registry names the push scope in it),
//! on the first request without a body, and the token is kept for the rest.

use std::io::Read;

use super::{read_error_body, Client, Error, OciError, Result};
use crate::image::digest::Digest;

impl Client {
    /// Sends `method url` (no body), answering one auth challenge.
    fn call(&self, method: &str, url: &str) -> Result<ureq::Response> {
        let send = |auth: Option<&str>| {
            let mut req = self.agent.request(method, url);
            if let Some(a) = auth {
                req = req.set("Authorization", a);
            }
            req.call().map_err(Box::new)
        };
        let current = self.authorization.lock().expect("auth lock").clone();
        let result = match send(current.as_deref()).map_err(|e| *e) {
            Err(ureq::Error::Status(401, resp)) => {
                let challenge = resp.header("www-authenticate").unwrap_or("").to_owned();
                let auth = self.authenticate(&challenge)?;
                *self.authorization.lock().expect("auth lock") = Some(auth.clone());
                send(Some(&auth)).map_err(|e| *e)
            }
            other => other,
        };
        self.answer(url, result.map_err(Box::new))
    }

    fn answer(
        &self,
        url: &str,
        result: Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<ureq::Response> {
        match result.map_err(|e| *e) {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(401, _)) => Err(self.credentials_error()),
            Err(ureq::Error::Status(status, resp)) => {
                let oci = OciError::parse(&read_error_body(resp));
                if status == 403 || oci.code == "DENIED" {
                    return Err(Error::Denied {
                        host: self.registry.clone(),
                        repository: self.repository.clone(),
                        message: oci.summary(),
                    });
                }
                Err(Error::Status {
                    url: url.to_owned(),
                    status,
                    message: oci.summary(),
                })
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(url, &t)),
        }
    }

    fn with_auth(&self, req: ureq::Request) -> ureq::Request {
        match self.authorization.lock().expect("auth lock").clone() {
            Some(a) => req.set("Authorization", &a),
            None => req,
        }
    }

    /// Whether the repository has blob `digest` (`HEAD`).
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repository))?;
        match self.call("HEAD", &url) {
            Ok(_) => Ok(true),
            Err(Error::Status { status: 404, .. }) | Err(Error::NameUnknown { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts an upload, asking to mount `digest` from repository `from`
    /// first. `Ok(None)`: mounted; `Ok(Some(location))`: upload there.
    pub fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Option<String>> {
        let mut path = format!("/v2/{}/blobs/uploads/", self.repository);
        if let Some((d, from)) = mount {
            path.push_str(&format!("?mount={d}&from={from}"));
        }
        let url = self.url(&path)?;
        let resp = self.call("POST", &url)?;
        if resp.status() == 201 && mount.is_some() {
            return Ok(None);
        }
        let location = resp
            .header("location")
            .ok_or_else(|| Error::Status {
                url: url.clone(),
                status: resp.status(),
                message: "no Location for the upload".into(),
            })?
            .to_owned();
        Ok(Some(self.absolute(&location)?))
    }

    fn absolute(&self, location: &str) -> Result<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(location.to_owned())
        } else {
            self.url(location)
        }
    }

    /// Sends the whole blob to the upload at `location` and finishes it.
    pub fn finish_upload(
        &self,
        location: &str,
        digest: &Digest,
        size: u64,
        body: impl Read,
    ) -> Result<()> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let req = self
            .with_auth(self.agent.put(&url))
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &size.to_string());
        self.answer(&url, req.send(body).map_err(Box::new))
            .map(drop)
    }

    /// Puts manifest `bytes` as `reference` (a tag or digest).
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repository))?;
        let req = self
            .with_auth(self.agent.put(&url))
            .set("Content-Type", media_type);
        self.answer(&url, req.send_bytes(bytes).map_err(Box::new))
            .map(drop)
    }

    /// The repository this client talks to.
    pub fn repository(&self) -> &str {
        &self.repository
    }
}
