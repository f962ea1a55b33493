//! What kvol's tests and benchmarks share across crates (a dev-dependency only): a tmpfs mounted for one
//! test and unmounted when dropped, and the facts and figures every benchmark prints (the machine, a
//! process's resident set, percentiles).
//!
//! Design decision: no dependency beyond std, so that every crate's tests can use it without pulling in
//! anything they would not build anyway.

#![warn(missing_docs)]

mod bench;
mod tmpfs;

pub use bench::{machine, percentile, rss_kib};
pub use tmpfs::Tmpfs;
