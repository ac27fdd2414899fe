//! Images: everything between a reference the user types and unpacked layer
//! directories on disk. Nothing here knows about containers or the sandbox.
//!
//! ```text
//! pull      -> client, auth, store, layers,   resolve, download, unpack, record
//!              unpack, reference, oci, digest
//! push      -> client, pull, store, reference  push (HEAD, mount, upload) and tag
//! client    -> auth, reference, oci, digest   the OCI distribution HTTP client
//! auth                                        the auth file, Docker's config.json
//! layers    -> unpack, store, digest          layers/<alg>/<hex>/, each unpacked once
//! unpack    -> store, digest, crate::sys      one layer archive -> a directory
//! store     -> oci, reference, digest         the local image store (`store` crate);
//!                                             store::cache: images by reference for `run`
//! reference -> digest                         `[registry/]repository[:tag][@digest]`
//! oci       -> digest                         the OCI image-spec documents read
//! digest                                      the store's digest type, re-exported
//! ```
//! Outside this folder, image uses only `crate::paths` (pull, layers, store)
//! and `crate::sys` (unpack's xattrs). [`store`] is the runner's only door
//! to stored blobs.

pub mod auth;
pub mod client;
pub mod digest;
pub mod layers;
pub mod oci;
pub mod pull;
pub mod push;
pub mod reference;
pub mod store;
pub mod unpack;
