//! The API's error envelope: every failure is `{"error": {"code", "message"}}` with a stable
//! snake_case code and the HTTP status that goes with it.

use hyper::StatusCode;
use serde::Serialize;

/// A failure to report to the client. `code` is stable (clients match on it); `message` is
/// for people and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human-readable detail carrying the offending value.
    pub message: String,
    /// Extra machine-readable detail (e.g. the receipts of a rejected transaction).
    pub details: Option<serde_json::Value>,
}

/// Stable error codes that the gateway itself produces. Ledger rejections use the ledger's own
/// codes (`RejectCode::as_str`) with status 422.
pub mod codes {
    /// Body is not valid JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// Body that is not a canonically encoded signed transaction (binary submissions).
    pub const MALFORMED_TRANSACTION: &str = "malformed_transaction";
    /// JSON object with a field the endpoint does not know, or an unknown query parameter.
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    /// Anything else wrong with the request (bad path parameter, bad query value, ...).
    pub const BAD_REQUEST: &str = "bad_request";
    /// Address that is not a valid bech32m Coffer address.
    pub const BAD_ADDRESS: &str = "bad_address";
    /// Transaction id that is not 64 hex characters.
    pub const BAD_TXID: &str = "bad_txid";
    /// Body above the configured limit.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// `Content-Type` other than `application/json` (or, for a transaction,
    /// `application/octet-stream`) on a request with a body.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// No such route or no such object.
    pub const NOT_FOUND: &str = "not_found";
    /// Route exists, method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// Client exceeded its request rate.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Client too slow sending its request.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// Node overloaded (mempool full, too many waiters) or not ready.
    pub const BUSY: &str = "busy";
    /// The node could not answer in time (e.g. commit not reached within the wait limit).
    pub const TIMEOUT: &str = "timeout";
    /// A bug or a storage failure on this replica. Never caused by input.
    pub const INTERNAL: &str = "internal";
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Adds machine-readable details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 422 with a ledger rejection code.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<&'a serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Envelope<'a> {
            error: Inner<'a>,
        }
        let envelope = Envelope {
            error: Inner {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        };
        // Serialising plain strings and an already-built Value cannot fail.
        serde_json::to_vec(&envelope)
            .unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\",\"message\":\"\"}}".to_vec())
    }
}
