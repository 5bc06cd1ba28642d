use thiserror::Error;

/// Errors of the core vocabulary (shape checks).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A buffer does not hold the number of values its shape promises.
    #[error("{what}: expected {expected} values for shape {shape}, got {got}")]
    BufferSize {
        what: &'static str,
        shape: String,
        expected: usize,
        got: usize,
    },
    /// Two things that must have the same size do not.
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch {
        what: String,
        expected: String,
        got: String,
    },
}

/// Errors of a black box asked for descriptors.
#[derive(Debug, Error)]
pub enum OracleError {
    /// The query budget is spent: the query was refused, not answered.
    #[error(
        "query budget exhausted for oracle '{oracle}': budget {budget}, already used {used}, \
         this call asked for {requested} more (raise --budget or resume with a fresh budget)"
    )]
    BudgetExhausted {
        oracle: String,
        budget: u64,
        used: u64,
        requested: u64,
    },
    /// The image cannot be answered by this oracle (wrong size, empty, ...).
    #[error("bad input for oracle '{oracle}': {reason}")]
    BadInput { oracle: String, reason: String },
    /// The model behind the oracle failed.
    #[error("model error in oracle '{oracle}': {reason}")]
    Model { oracle: String, reason: String },
    /// The remote oracle could not be reached after all retries.
    #[error("cannot reach the black box at {url}: {reason} (is `advface serve` running there?)")]
    Transport { url: String, reason: String },
    /// The remote oracle answered with an error status.
    #[error("the black box at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The remote oracle answered something that is not a descriptor.
    #[error("malformed answer from the black box at {url}: {reason}")]
    Malformed { url: String, reason: String },
    /// Reading or writing the on-disk cache failed.
    #[error("descriptor cache at {path}: {reason}")]
    Cache { path: String, reason: String },
}
