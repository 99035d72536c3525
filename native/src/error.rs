use thiserror::Error;

/// Every fallible core function returns this; the Python layer maps it to exceptions.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("unknown encoding {0:?} (expected cl100k_base or o200k_base)")]
    UnknownEncoding(String),
    #[error("token id {0} is not in the vocabulary")]
    InvalidToken(u32),
}
