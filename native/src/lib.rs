//! Sidegate's native core. Everything outside `py` is plain Rust with no Python in it, so
//! `cargo test` runs without an interpreter; `py` is the thin PyO3 skin maturin builds.

pub mod access_line;
pub mod cache_key;
pub mod chunked;
pub mod error;
pub mod header_block;
pub mod header_rules;
pub mod http_head;
pub mod inspect;
pub mod json;
pub mod ratelimit;
pub mod spend;
pub mod sse_scan;
pub mod stream_head;
pub mod tokens;
pub mod upstream_request;
pub mod usage;
pub mod utc_text;

#[cfg(feature = "python")]
mod py;

pub use error::CoreError;
