//! Routing and handlers: path and query parsing, body reading under limits, and the mapping
//! of backend results to statuses. The route table here and `docs/openapi.json` describe the
//! same API; a test walks the document against the server.

use super::backend::{Backend, BackendError, BlockList, SubmitOutcome, TxStatus};
use super::error::{ApiError, codes};
use super::server::{State, json_response};
use coffer_ledger::attest::ReadQuery;
use coffer_ledger::{Address, RejectCode, SignedTransaction, Txid};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI document, checked in at `docs/openapi.json` and served at `/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

type Reply = Result<Response<Full<Bytes>>, ApiError>;

/// Longest path accepted; real paths are under 150 bytes.
const MAX_PATH_BYTES: usize = 512;
/// Longest cursor accepted in a query string.
const MAX_CURSOR_BYTES: usize = 128;

/// Routes a request and runs its handler. Returns the route template for metrics.
pub(crate) async fn dispatch<B: Backend>(
    state: &Arc<State<B>>,
    req: Request<Incoming>,
) -> (&'static str, Reply) {
    let path = req.uri().path().to_owned();
    if path.len() > MAX_PATH_BYTES {
        return (
            "unknown",
            Err(ApiError::not_found(format!("path of {} bytes", path.len()))),
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let s = state;
    match segments.as_slice() {
        ["v1", "transactions"] => match method {
            Method::POST => ("/v1/transactions", submit(s, req, query).await),
            _ => ("/v1/transactions", not_allowed(&method, "POST")),
        },
        ["v1", "transactions", id] => match method {
            Method::GET => ("/v1/transactions/{txid}", transaction(s, id, query).await),
            _ => ("/v1/transactions/{txid}", not_allowed(&method, "GET")),
        },
        [
            "v1",
            "addresses",
            addr,
            kind @ ("balance" | "utxos" | "history"),
        ] => {
            let route = match *kind {
                "balance" => "/v1/addresses/{address}/balance",
                "utxos" => "/v1/addresses/{address}/utxos",
                _ => "/v1/addresses/{address}/history",
            };
            match method {
                Method::GET => (route, address_read(s, addr, kind, query).await),
                _ => (route, not_allowed(&method, "GET")),
            }
        }
        ["v1", "blocks"] => match method {
            Method::GET => ("/v1/blocks", blocks(s, query).await),
            _ => ("/v1/blocks", not_allowed(&method, "GET")),
        },
        ["v1", "blocks", height] => match method {
            Method::GET => ("/v1/blocks/{height}", block(s, height, query).await),
            _ => ("/v1/blocks/{height}", not_allowed(&method, "GET")),
        },
        ["v1", "supply"] => match method {
            Method::GET => ("/v1/supply", supply(s, query).await),
            _ => ("/v1/supply", not_allowed(&method, "GET")),
        },
        ["v1", "status"] => match method {
            Method::GET => ("/v1/status", status(s, query).await),
            _ => ("/v1/status", not_allowed(&method, "GET")),
        },
        ["v1", "health"] => match method {
            Method::GET => ("/v1/health", health(s, query).await),
            _ => ("/v1/health", not_allowed(&method, "GET")),
        },
        ["v1", "openapi.json"] => match method {
            Method::GET => ("/v1/openapi.json", openapi(query)),
            _ => ("/v1/openapi.json", not_allowed(&method, "GET")),
        },
        ["metrics"] => match method {
            Method::GET => ("/metrics", metrics(s, query)),
            _ => ("/metrics", not_allowed(&method, "GET")),
        },
        _ => (
            "unknown",
            Err(ApiError::not_found(format!("no route {path:?}"))),
        ),
    }
}

fn not_allowed(method: &Method, allow: &'static str) -> Reply {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed here; allowed: {allow}"),
    )
    .with_details(serde_json::json!({ "allow": allow })))
}

/// A 500 `internal`: our own failure, never the input's.
fn internal(message: impl ToString) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        message.to_string(),
    )
}

fn ok_json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value).map_err(internal)?;
    Ok(json_response(status, body))
}

fn ok_binary(status: StatusCode, outcome: &SubmitOutcome) -> Reply {
    let body = outcome.encode().map_err(internal)?;
    Ok(super::server::response(
        status,
        SubmitOutcome::MEDIA_TYPE,
        body,
    ))
}

/// Whether the request's `Accept` lists `media_type` (parameters and quality ignored: a client
/// that lists it can read it), unless with quality 0 (`q=0`: "not acceptable").
fn accepts(req: &Request<Incoming>, media_type: &str) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| accepts_one(m, media_type))
}

/// Whether one `Accept` element (`type/subtype;param=…`) names `media_type` acceptably.
fn accepts_one(element: &str, media_type: &str) -> bool {
    let mut parts = element.split(';');
    let named = parts
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(media_type));
    let refused = parts.any(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
        })
    });
    named && !refused
}

fn backend_error(e: BackendError) -> ApiError {
    match e {
        BackendError::Rejected { code, message } => ApiError::rejected(code.as_str(), message),
        BackendError::Invalid(m) => ApiError::bad_request(m),
        BackendError::Busy(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, codes::BUSY, m),
        BackendError::Timeout(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, codes::TIMEOUT, m),
        BackendError::Internal(m) => internal(m),
    }
}

/// Runs a backend call under a deadline (504 `timeout` after it).
async fn deadline<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, BackendError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(backend_error),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            codes::TIMEOUT,
            format!("{what} not answered within {} ms", limit.as_millis()),
        )),
    }
}

/// Parses `a=1&b=2`, refusing parameters not in `allowed`, repeated ones and percent-encoding
/// (no parameter of this API needs it).
fn parse_query<'q>(
    query: Option<&'q str>,
    allowed: &[&str],
) -> Result<BTreeMap<&'q str, &'q str>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(out);
    };
    // Empty pairs (`a=1&`, `a=1&&b=2`) are nothing, not a parameter named "".
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&key) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::UNKNOWN_FIELD,
                format!("unknown query parameter {key:?}; allowed: {allowed:?}"),
            ));
        }
        if value.contains('%') || value.contains('+') {
            return Err(ApiError::bad_request(format!(
                "query parameter {key} must not be encoded"
            )));
        }
        if out.insert(key, value).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {key} given twice"
            )));
        }
    }
    Ok(out)
}

fn parse_u64(what: &str, s: &str) -> Result<u64, ApiError> {
    // Digits only: u64::from_str would also take a leading '+'.
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "{what} {s:?} is not a decimal integer"
        )));
    }
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} {s:?} is out of range")))
}

fn parse_bool(what: &str, s: &str) -> Result<bool, ApiError> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{what} {s:?} is not true or false"
        ))),
    }
}

fn parse_txid(s: &str) -> Result<Txid, ApiError> {
    Txid::from_str(s).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_TXID,
            format!("txid {s:?}: {e}"),
        )
    })
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    Address::from_str(s).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::BAD_ADDRESS,
            format!("address {s:?}: {e}"),
        )
    })
}

/// How a submitted transaction is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxEncoding {
    Json,
    Binary,
}

/// The submission's encoding, from its `Content-Type` (parameters such as `charset` ignored).
fn tx_encoding(req: &Request<Incoming>) -> Result<TxEncoding, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let media_type = content_type.map(|v| v.split(';').next().unwrap_or("").trim());
    match media_type {
        Some(m) if m.eq_ignore_ascii_case("application/json") => Ok(TxEncoding::Json),
        Some(m) if m.eq_ignore_ascii_case(SignedTransaction::MEDIA_TYPE) => Ok(TxEncoding::Binary),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {:?}, want application/json or {}",
                content_type.unwrap_or(""),
                SignedTransaction::MEDIA_TYPE
            ),
        )),
    }
}

fn too_large(limit: usize, got: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::BODY_TOO_LARGE,
        format!("body of {got} bytes, limit {limit}"),
    )
}

/// Reads the whole body, at most `limit` bytes and within `timeout`.
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse a declared oversize body before reading any of it.
    if let Some(len) = declared.filter(|len| *len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large(limit, len));
    }
    let body = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::REQUEST_TIMEOUT,
            format!("body not received within {} ms", timeout.as_millis()),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_large(limit, "more than the limit"))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!("reading body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Maps a JSON decoding failure to `malformed_json`, `unknown_field` or `bad_request`.
fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(StatusCode::BAD_REQUEST, codes::MALFORMED_JSON, message)
        }
        Category::Data if message.starts_with("unknown field") => {
            ApiError::new(StatusCode::BAD_REQUEST, codes::UNKNOWN_FIELD, message)
        }
        Category::Data => ApiError::bad_request(message),
    }
}

async fn submit<B: Backend>(
    state: &Arc<State<B>>,
    req: Request<Incoming>,
    query: Option<&str>,
) -> Reply {
    let params = parse_query(query, &["wait"])?;
    let wait = params
        .get("wait")
        .map(|v| parse_bool("wait", v))
        .transpose()?
        .unwrap_or(true);
    let encoding = tx_encoding(&req)?;
    let binary_answer = accepts(&req, SubmitOutcome::MEDIA_TYPE);
    let body = read_body(
        req,
        state.config.max_body_bytes,
        state.config.body_read_timeout,
    )
    .await?;
    let tx: SignedTransaction = match encoding {
        TxEncoding::Json => serde_json::from_slice(&body).map_err(|e| json_error(&e))?,
        TxEncoding::Binary => state.backend.decode_tx(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::MALFORMED_TRANSACTION,
                format!("transaction encoding: {e}"),
            )
        })?,
    };
    let limit = if wait {
        state.config.submit_timeout
    } else {
        state.config.request_timeout
    };
    let outcome: SubmitOutcome = deadline(limit, "commit", state.backend.submit(tx, wait)).await?;
    let bundle = &outcome.bundle;
    // Successes in binary when the client asked for it; errors stay JSON.
    let ok = |status| {
        if binary_answer {
            ok_binary(status, &outcome)
        } else {
            ok_json(status, &outcome)
        }
    };
    match (bundle.status, bundle.code.as_deref()) {
        (TxStatus::Pending, _) => ok(StatusCode::ACCEPTED),
        (TxStatus::Committed, Some(coffer_ledger::attest::CODE_OK)) => ok(StatusCode::OK),
        (TxStatus::Committed, code) => {
            // Committed but refused by the ledger (e.g. an input already spent): the signed
            // receipts prove it, so they travel with the error.
            let code = code.and_then(|c| RejectCode::from_str(c).ok());
            let code_str = code.map_or("rejected", RejectCode::as_str);
            let details = serde_json::to_value(&outcome).map_err(internal)?;
            Err(ApiError::rejected(
                code_str,
                format!("transaction {} rejected: {code_str}", bundle.txid),
            )
            .with_details(details))
        }
    }
}

async fn transaction<B: Backend>(state: &Arc<State<B>>, id: &str, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let txid = parse_txid(id)?;
    let found = deadline(
        state.config.request_timeout,
        "transaction",
        state.backend.transaction(txid),
    )
    .await?;
    match found {
        Some(bundle) => ok_json(StatusCode::OK, &bundle),
        None => Err(ApiError::not_found(format!("transaction {txid} unknown"))),
    }
}

fn page_params(
    state_page: (u32, u32),
    params: &BTreeMap<&str, &str>,
) -> Result<(Option<String>, u32), ApiError> {
    let (default_page, max_page) = state_page;
    let limit = match params.get("limit") {
        None => default_page,
        Some(v) => {
            let n = parse_u64("limit", v)?;
            if n == 0 || n > u64::from(max_page) {
                return Err(ApiError::bad_request(format!(
                    "limit {n} is outside 1..={max_page}"
                )));
            }
            // Bounded by max_page, a u32.
            u32::try_from(n).unwrap_or(max_page)
        }
    };
    let cursor = match params.get("cursor") {
        None => None,
        Some(c) => {
            let ok = !c.is_empty()
                && c.len() <= MAX_CURSOR_BYTES
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':');
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "cursor {c:?} is not one this API issued"
                )));
            }
            Some((*c).to_owned())
        }
    };
    Ok((cursor, limit))
}

async fn address_read<B: Backend>(
    state: &Arc<State<B>>,
    addr: &str,
    kind: &str,
    query: Option<&str>,
) -> Reply {
    let address = parse_address(addr)?.to_string();
    let pages = (state.config.default_page, state.config.max_page);
    let read = match kind {
        "balance" => {
            parse_query(query, &[])?;
            ReadQuery::Balance { address }
        }
        "utxos" => {
            let (cursor, limit) = page_params(pages, &parse_query(query, &["cursor", "limit"])?)?;
            ReadQuery::Utxos {
                address,
                cursor,
                limit,
            }
        }
        _ => {
            let (cursor, limit) = page_params(pages, &parse_query(query, &["cursor", "limit"])?)?;
            ReadQuery::History {
                address,
                cursor,
                limit,
            }
        }
    };
    let answer = deadline(
        state.config.request_timeout,
        "read",
        state.backend.read(read),
    )
    .await?;
    ok_json(StatusCode::OK, &answer)
}

async fn supply<B: Backend>(state: &Arc<State<B>>, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let answer = deadline(
        state.config.request_timeout,
        "read",
        state.backend.read(ReadQuery::Supply),
    )
    .await?;
    ok_json(StatusCode::OK, &answer)
}

async fn block<B: Backend>(state: &Arc<State<B>>, height: &str, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let height = parse_u64("height", height)?;
    let found = deadline(
        state.config.request_timeout,
        "block",
        state.backend.block(height),
    )
    .await?;
    match found {
        Some(block) => ok_json(StatusCode::OK, &block),
        None => Err(ApiError::not_found(format!("no block at height {height}"))),
    }
}

async fn blocks<B: Backend>(state: &Arc<State<B>>, query: Option<&str>) -> Reply {
    let params = parse_query(query, &["from", "to"])?;
    let (Some(from), Some(to)) = (params.get("from"), params.get("to")) else {
        return Err(ApiError::bad_request(
            "query parameters from and to are required",
        ));
    };
    let (from, to) = (parse_u64("from", from)?, parse_u64("to", to)?);
    let max = state.config.max_block_range;
    if from > to || to - from >= max {
        return Err(ApiError::bad_request(format!(
            "range {from}..={to} is empty or longer than {max} blocks"
        )));
    }
    let found = deadline(
        state.config.request_timeout,
        "blocks",
        state.backend.blocks(from, to),
    )
    .await?;
    ok_json(StatusCode::OK, &BlockList { blocks: found })
}

async fn status<B: Backend>(state: &Arc<State<B>>, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let status = deadline(
        state.config.request_timeout,
        "status",
        state.backend.status(),
    )
    .await?;
    ok_json(StatusCode::OK, &status)
}

async fn health<B: Backend>(state: &Arc<State<B>>, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let health = deadline(
        state.config.request_timeout,
        "health",
        state.backend.health(),
    )
    .await?;
    // The status code carries the verdict, so probes need not parse the body.
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    ok_json(status, &health)
}

fn openapi(query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    Ok(json_response(
        StatusCode::OK,
        OPENAPI_JSON.as_bytes().to_vec(),
    ))
}

fn metrics<B: Backend>(state: &Arc<State<B>>, query: Option<&str>) -> Reply {
    parse_query(query, &[])?;
    let mut text = state.metrics.render();
    text.push_str(&state.backend.metrics());
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_is_strict() {
        let q = parse_query(Some("limit=5&cursor=abc"), &["limit", "cursor"]).expect("valid");
        assert_eq!(q.get("limit"), Some(&"5"));
        assert_eq!(
            parse_query(Some("x=1"), &["limit"]).map_err(|e| e.code),
            Err(codes::UNKNOWN_FIELD)
        );
        assert!(parse_query(Some("limit=1&limit=2"), &["limit"]).is_err());
        assert!(parse_query(Some("limit=%31"), &["limit"]).is_err());
        assert!(parse_query(None, &[]).expect("empty").is_empty());
        // Empty pairs are skipped, not a parameter named "".
        let q = parse_query(Some("limit=5&&cursor=abc&"), &["limit", "cursor"]).expect("valid");
        assert_eq!((q.get("limit"), q.len()), (Some(&"5"), 2));
    }

    #[test]
    fn accept_with_quality_zero_refuses_the_type() {
        let binary = "application/octet-stream";
        for (element, ok) in [
            ("application/octet-stream", true),
            (" Application/Octet-Stream ;q=0.5", true),
            ("application/octet-stream;q=0", false),
            ("application/octet-stream; q=0.000", false),
            ("application/json", false),
        ] {
            assert_eq!(accepts_one(element, binary), ok, "{element}");
        }
    }

    #[test]
    fn integers_are_digits_only() {
        assert_eq!(parse_u64("h", "42").ok(), Some(42));
        for bad in ["", "+1", "-1", "1e3", "0x10", "99999999999999999999999"] {
            assert!(parse_u64("h", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert!(doc["paths"].is_object());
    }
}
