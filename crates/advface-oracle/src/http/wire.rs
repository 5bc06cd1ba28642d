//! The JSON bodies of the black-box HTTP API, shared by the server and the client.
//!
//! | route            | answer                                                        |
//! |------------------|---------------------------------------------------------------|
//! | `POST /describe` | 200 [`DescribeAnswer`]; an error status with [`ErrorAnswer`]   |
//! | `GET /health`    | 200 [`Health`]                                                |

use serde::{Deserialize, Serialize};

/// Path of the describe route.
pub const DESCRIBE_PATH: &str = "/describe";
/// Path of the health route.
pub const HEALTH_PATH: &str = "/health";

/// The answer to `POST /describe`: `{"descriptor": [128 floats], "queries": n}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DescribeAnswer {
    /// The descriptor of the posted image (f32, shortest decimal that reads back exactly).
    pub descriptor: Vec<f32>,
    /// Queries this server has answered so far, this one included.
    pub queries: u64,
}

/// The answer to `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `"ok"` when the server answers.
    pub status: String,
    /// The name of the model behind the server.
    pub model: String,
    /// Queries answered so far (images described).
    pub queries: u64,
    /// The server's query budget, `null` when unlimited.
    pub budget: Option<u64>,
    /// Queries left in the budget (in-flight requests count as used), `null` when unlimited.
    pub remaining: Option<u64>,
    /// Descriptor length, `null` when the model does not state it.
    pub descriptor_len: Option<usize>,
}

/// The body of every error status: `{"error": code, "message": text, ...}`.
///
/// Codes: `unauthorized` (401), `not_found` (404), `method_not_allowed` (405),
/// `payload_too_large` (413), `bad_image` (422), `budget_exhausted` (429, with `budget`,
/// `used` and `requested`), `model_error` (500), `internal` (500), `upstream_error` (502).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// A stable machine-readable code.
    pub error: String,
    /// What went wrong and how to fix it, for people.
    pub message: String,
    /// The budget, in queries (`budget_exhausted` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// Queries used when the request was refused (`budget_exhausted` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// Queries the refused request asked for (`budget_exhausted` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<u64>,
}

impl ErrorAnswer {
    /// An error with a code and a message only.
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_string(),
            message: message.into(),
            budget: None,
            used: None,
            requested: None,
        }
    }
}
