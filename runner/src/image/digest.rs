//! Content digests for the runner: the shared store's validated [`Digest`],
//! [`Algorithm`] and streaming [`Hasher`] (re-exported, so there is one digest
//! type across the workspace), plus [`HashingReader`], which hashes what is
//! read through it to verify downloads and unpacked layers.

use std::io::{self, Read};

pub use store::{Algorithm, Digest, Hasher};

/// The error from parsing a digest (the store's).
pub type Error = store::Error;

/// The SHA-256 digest of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// A reader that hashes, and counts, everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, hashing with `algorithm`.
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: algorithm.hasher(),
            len: 0,
        }
    }

    /// Reads the rest of the stream; returns the hasher and the total length,
    /// so that more bytes can still be hashed after them.
    pub fn drain(mut self) -> io::Result<(Hasher, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher, self.len))
    }

    /// Reads the rest of the stream and returns its digest and total length.
    pub fn finish(self) -> io::Result<(Digest, u64)> {
        let (hasher, len) = self.drain()?;
        Ok((hasher.finish(), len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_reader_hashes_the_whole_stream() {
        let r = HashingReader::new(&b"hello"[..], Algorithm::Sha256);
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, sha256_of(b"hello"));
    }

    #[test]
    fn drained_hasher_keeps_hashing() {
        let (mut h, n) = HashingReader::new(&b"hel"[..], Algorithm::Sha256)
            .drain()
            .unwrap();
        h.update(b"lo");
        assert_eq!(n, 3);
        assert_eq!(h.finish(), sha256_of(b"hello"));
    }
}
