use thiserror::Error;

/// Every fallible core function returns this; the Python layer maps it to exceptions.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("unknown encoding {0:?} (expected cl100k_base or o200k_base)")]
    UnknownEncoding(String),
    #[error("token id {0} is not in the vocabulary")]
    InvalidToken(u32),
    #[error("unknown endpoint {0:?} (expected chat, completions or embeddings)")]
    UnknownEndpoint(String),
    /// The request body cannot be served; `param` names the offending field, if one is.
    #[error("{message}")]
    InvalidBody {
        message: String,
        param: Option<String>,
    },
    /// A rate-limit argument is out of range (e.g. a zero period or a negative cost).
    #[error("{0}")]
    InvalidLimit(String),
}
