//! The Container Storage Interface (CSI v1) and kubelet's plugin-registration API (v1), for kvol.
//!
//! kvol is both a CO (it calls CSI drivers from the node agent and the controller roles) and a CSI
//! driver (`kvol-csi`), so both sides share this crate: the generated messages, clients and servers, and
//! the unix-socket plumbing every CSI endpoint needs.
//!
//! Key decision: the `.proto` files in `proto/` are written here from the public specifications and
//! compiled at build time with `protox` (a pure-Rust protobuf compiler) instead of a system `protoc`, so
//! the workspace builds from `cargo` alone, and the wire facts (names, field numbers, enum values) live
//! in one reviewable place.

mod client;
mod endpoint;
mod error;
mod proto;
mod server;

pub use client::{connect, connect_lazy};
pub use endpoint::parse_endpoint;
pub use error::{Error, Result};
pub use proto::{pluginregistration, v1};
pub use server::serve_unix;
