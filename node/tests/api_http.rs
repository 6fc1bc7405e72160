//! The REST API over real TLS (the checked-in dev certificates) against the in-memory
//! 4-replica backend: routes as documented, receipts and reads verified with f+1 / 2f+1
//! signatures, replays, malformed input, limits.

mod common;
mod xorshift;

use coffer_ledger::attest::{
    self, DiscardReason, QuorumError, ReadQuery, ReadResult, ReadStatement, ReceiptStatement,
    Signed, verify_quorum, verify_read,
};
use coffer_ledger::{Keypair, OutPoint, SignedTransaction};
use coffer_node::api::{ApiConfig, ApiServer, OPENAPI_JSON, SubmitOutcome, TxStatus};
use common::client::{Client, Reply};
use common::{
    Byzantine, CHAIN, MemoryCluster, dev_ca, dev_server_tls, mint, replica_set, transfer,
};
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use xorshift::Rng;

async fn start(cluster: MemoryCluster, config: ApiConfig) -> (ApiServer, Client) {
    let server = ApiServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        dev_server_tls(0),
        config,
        Arc::new(cluster),
    )
    .await
    .expect("server starts");
    let client = Client::new(server.local_addr(), &dev_ca());
    (server, client)
}

fn outcome(reply: &Reply) -> SubmitOutcome {
    serde_json::from_slice(&reply.body).expect("SubmitOutcome JSON")
}

/// The outcome of a submission that must have committed with code `ok`.
fn committed_ok(reply: &Reply) -> SubmitOutcome {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let out = outcome(reply);
    assert_eq!(out.bundle.code.as_deref(), Some("ok"));
    out
}

fn receipts(bundle_json: &Value) -> Vec<Signed<ReceiptStatement>> {
    serde_json::from_value(bundle_json["receipts"].clone()).expect("receipts")
}

fn assert_no_5xx(reply: &Reply, what: &str) {
    assert!(
        !reply.status.is_server_error(),
        "{what}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
}

/// Submit a mint and a transfer, read them back, and verify every signature a client needs.
#[tokio::test]
async fn submit_read_back_and_verify() {
    let (server, client) = start(MemoryCluster::new(Byzantine::None), ApiConfig::default()).await;
    let set = replica_set();
    let alice = Keypair::from_secret_bytes([21; 32]).expect("key");
    let bob = Keypair::from_secret_bytes([22; 32]).expect("key");

    let m = mint(alice.address(), 1_000, 1);
    let reply = client
        .post_json("/v1/transactions", serde_json::to_vec(&m).expect("json"))
        .await;
    let out = committed_ok(&reply);
    assert!(!out.replayed);
    let v = verify_quorum(&out.bundle.receipts, &set, CHAIN, set.strong_quorum()).expect("2f+1");
    assert_eq!(v.statement.txid, m.txid().0);
    assert_eq!(v.statement.code, "ok");
    assert_eq!(v.signers.len(), 4);

    // Spend it: 600 to bob, 400 change.
    let t = transfer(
        &alice,
        vec![OutPoint {
            txid: m.txid(),
            vout: 0,
        }],
        vec![(bob.address(), 600), (alice.address(), 400)],
    );
    // Submitted in its canonical binary encoding this time.
    let reply = client
        .send(
            Method::POST,
            "/v1/transactions",
            Some(SignedTransaction::MEDIA_TYPE),
            t.encode(),
        )
        .await;
    let out = committed_ok(&reply);
    assert_eq!(out.bundle.txid, t.txid());
    let height = out.bundle.height.expect("committed");

    // Asked for binary, the answer is the same outcome in `SubmitOutcome`'s binary form, and
    // its receipts verify as the JSON ones do.
    let reply = client
        .send_accepting(
            Method::POST,
            "/v1/transactions",
            Some(SignedTransaction::MEDIA_TYPE),
            Some("application/octet-stream, application/json"),
            t.encode(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers[hyper::header::CONTENT_TYPE],
        SubmitOutcome::MEDIA_TYPE
    );
    let binary = SubmitOutcome::decode(&reply.body).expect("binary outcome");
    assert!(
        binary.replayed,
        "the second submission of a committed transaction"
    );
    assert_eq!(
        (
            binary.bundle.txid,
            binary.bundle.status,
            binary.bundle.height
        ),
        (t.txid(), TxStatus::Committed, Some(height))
    );
    assert_eq!(binary.bundle.code.as_deref(), Some("ok"));
    let v = verify_quorum(&binary.bundle.receipts, &set, CHAIN, 3).expect("quorum");
    assert_eq!((v.statement.txid, v.statement.height), (t.txid().0, height));
    // An error stays JSON, whatever the client accepts.
    let change = transfer(
        &alice,
        vec![OutPoint {
            txid: t.txid(),
            vout: 1,
        }],
        vec![(bob.address(), 400)],
    );
    let mut forged = change.encode();
    *forged.last_mut().expect("signature") ^= 1;
    let reply = client
        .send_accepting(
            Method::POST,
            "/v1/transactions",
            Some(SignedTransaction::MEDIA_TYPE),
            Some("application/octet-stream"),
            forged,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.headers[hyper::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(reply.code(), "bad_signature");

    // The transaction by id: same receipts, verifiable.
    let reply = client.get(&format!("/v1/transactions/{}", t.txid())).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = verify_quorum(&receipts(&reply.json()), &set, CHAIN, 3).expect("quorum");
    assert_eq!(
        (v.statement.height, v.statement.code.as_str()),
        (height, "ok")
    );

    // Balance of bob, checked against the signed read statements.
    let reply = client
        .get(&format!("/v1/addresses/{}/balance", bob.address()))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let result: ReadResult = serde_json::from_value(body["result"].clone()).expect("result");
    assert_eq!(
        result,
        ReadResult::Balance {
            amount: 600,
            utxo_count: 1
        }
    );
    let signed: Vec<Signed<ReadStatement>> =
        serde_json::from_value(body["attestations"].clone()).expect("attestations");
    let query = ReadQuery::Balance {
        address: bob.address().to_string(),
    };
    let v = verify_read(&signed, &set, CHAIN, 3, &query, &result).expect("read quorum");
    assert_eq!(v.statement.height, height);
    assert_eq!(
        hex::encode(v.statement.commitment),
        body["commitment"].as_str().expect("hex")
    );
    // A gateway that inflates the balance cannot get it verified.
    let lie = ReadResult::Balance {
        amount: 6_000,
        utxo_count: 1,
    };
    assert!(verify_read(&signed, &set, CHAIN, 2, &query, &lie).is_err());

    // History of alice, newest first, one per page, with cursors.
    let reply = client
        .get(&format!(
            "/v1/addresses/{}/history?limit=1",
            alice.address()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let result: ReadResult = serde_json::from_value(body["result"].clone()).expect("result");
    let ReadResult::History {
        entries,
        next_cursor,
    } = &result
    else {
        panic!("{result:?}")
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].txid, t.txid().0, "newest first");
    let cursor = next_cursor.clone().expect("older page");
    let signed: Vec<Signed<ReadStatement>> =
        serde_json::from_value(body["attestations"].clone()).expect("attestations");
    let query = ReadQuery::History {
        address: alice.address().to_string(),
        cursor: None,
        limit: 1,
    };
    verify_read(&signed, &set, CHAIN, 3, &query, &result).expect("history quorum");
    let reply = client
        .get(&format!(
            "/v1/addresses/{}/history?limit=1&cursor={cursor}",
            alice.address()
        ))
        .await;
    let result: ReadResult =
        serde_json::from_value(reply.json()["result"].clone()).expect("result");
    let ReadResult::History {
        entries,
        next_cursor,
    } = result
    else {
        panic!()
    };
    assert_eq!(entries[0].txid, m.txid().0);
    assert_eq!(next_cursor, None);

    // UTXOs of alice: the change output only.
    let reply = client
        .get(&format!("/v1/addresses/{}/utxos", alice.address()))
        .await;
    let result: ReadResult =
        serde_json::from_value(reply.json()["result"].clone()).expect("result");
    let ReadResult::Utxos { entries, .. } = result else {
        panic!()
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].txid, entries[0].vout, entries[0].amount),
        (t.txid().0, 1, 400)
    );

    // Supply, attested.
    let reply = client.get("/v1/supply").await;
    let body = reply.json();
    let result: ReadResult = serde_json::from_value(body["result"].clone()).expect("result");
    assert_eq!(result, ReadResult::Supply { total: 1_000 });
    let signed: Vec<Signed<ReadStatement>> =
        serde_json::from_value(body["attestations"].clone()).expect("attestations");
    verify_read(&signed, &set, CHAIN, 3, &ReadQuery::Supply, &result).expect("supply quorum");

    // Blocks: both heights, in order.
    let reply = client.get("/v1/blocks?from=1&to=2").await;
    let blocks = reply.json()["blocks"].as_array().expect("blocks").clone();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1]["transactions"][0]["txid"], t.txid().to_string());
    let reply = client.get("/v1/blocks/3").await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    server.shutdown().await;
}

/// Submitting a committed transaction again returns its original receipts and applies nothing.
#[tokio::test]
async fn replay_returns_original_receipts() {
    let (server, client) = start(MemoryCluster::new(Byzantine::None), ApiConfig::default()).await;
    let alice = Keypair::from_secret_bytes([31; 32]).expect("key");
    let m = mint(alice.address(), 500, 9);
    let body = serde_json::to_vec(&m).expect("json");
    let first = outcome(&client.post_json("/v1/transactions", body.clone()).await);
    let second_reply = client.post_json("/v1/transactions", body).await;
    assert_eq!(second_reply.status, StatusCode::OK);
    let second = outcome(&second_reply);
    assert!(!first.replayed);
    assert!(second.replayed);
    assert_eq!(
        second.bundle, first.bundle,
        "the original receipts, byte for byte"
    );
    let status = client.get("/v1/status").await.json();
    assert_eq!(status["height"], 1, "applied once");
    let balance = client
        .get(&format!("/v1/addresses/{}/balance", alice.address()))
        .await
        .json();
    assert_eq!(balance["result"]["amount"], 500);

    // Replaying a spent transfer's inputs under a new txid is a ledger rejection with receipts.
    let bob = Keypair::from_secret_bytes([32; 32]).expect("key");
    let input = OutPoint {
        txid: m.txid(),
        vout: 0,
    };
    let t1 = transfer(&alice, vec![input], vec![(bob.address(), 500)]);
    let t2 = transfer(
        &alice,
        vec![input],
        vec![(bob.address(), 499), (alice.address(), 1)],
    );
    assert_eq!(
        client
            .post_json("/v1/transactions", serde_json::to_vec(&t1).expect("json"))
            .await
            .status,
        StatusCode::OK
    );
    let reply = client
        .post_json("/v1/transactions", serde_json::to_vec(&t2).expect("json"))
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.code(), "input_already_spent");
    let details = &reply.json()["error"]["details"]["bundle"];
    let v = verify_quorum(&receipts(details), &replica_set(), CHAIN, 3).expect("signed rejection");
    assert_eq!(v.statement.code, "input_already_spent");
    server.shutdown().await;
}

/// `wait=false` answers 202 pending; the transaction is then found committed.
#[tokio::test]
async fn submit_without_waiting_is_accepted() {
    let (server, client) = start(MemoryCluster::new(Byzantine::None), ApiConfig::default()).await;
    let m = mint(
        Keypair::from_secret_bytes([41; 32]).expect("key").address(),
        5,
        1,
    );
    let reply = client
        .post_json(
            "/v1/transactions?wait=false",
            serde_json::to_vec(&m).expect("json"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.json()["bundle"]["status"], "pending");
    let reply = client.get(&format!("/v1/transactions/{}", m.txid())).await;
    assert_eq!(reply.json()["status"], "committed");
    server.shutdown().await;
}

/// Malformed bodies, wrong content types, oversized bodies, bad signatures, wrong chains, bad
/// path and query parameters: each gets its code and status, none a 5xx.
#[tokio::test]
async fn bad_requests_get_their_codes() {
    let config = ApiConfig {
        max_body_bytes: 4096,
        ..ApiConfig::default()
    };
    let (server, client) = start(MemoryCluster::new(Byzantine::None), config).await;
    let alice = Keypair::from_secret_bytes([51; 32]).expect("key");
    let good = mint(alice.address(), 10, 1);
    let good_json = serde_json::to_value(&good).expect("json");

    let mut bad_sig = good_json.clone();
    let sig = bad_sig["signature"].as_str().expect("hex").to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    bad_sig["signature"] = Value::String(flipped);
    let mut unknown = good_json.clone();
    unknown["extra"] = Value::Bool(true);
    let mut unknown_inner = good_json.clone();
    unknown_inner["tx"]["colour"] = Value::String("red".into());
    let other_chain = mint(alice.address(), 10, 2);
    let mut other_chain = serde_json::to_value(&other_chain).expect("json");
    other_chain["tx"]["chain_id"] = Value::String("coffer-elsewhere".into());

    let post = |body: Vec<u8>| client.post_json("/v1/transactions", body);
    let post_binary = |body: Vec<u8>| {
        client.send(
            Method::POST,
            "/v1/transactions",
            Some(SignedTransaction::MEDIA_TYPE),
            body,
        )
    };
    let good_binary = good.encode();
    let mut trailing = good_binary.clone();
    trailing.push(0);
    let mut bad_sig_binary = good_binary.clone();
    *bad_sig_binary.last_mut().expect("signature bytes") ^= 1;
    let cases: Vec<(&str, Reply, StatusCode, &str)> = vec![
        (
            "truncated json",
            post(b"{\"tx\": {".to_vec()).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not json",
            post(b"\xff\xfe garbage".to_vec()).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "empty body",
            post(Vec::new()).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "json array",
            post(b"[1,2]".to_vec()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown field",
            post(unknown.to_string().into()).await,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "unknown inner field",
            post(unknown_inner.to_string().into()).await,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "bad signature",
            post(bad_sig.to_string().into()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_signature",
        ),
        (
            "wrong chain",
            post(other_chain.to_string().into()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_chain",
        ),
        (
            "binary, truncated",
            post_binary(good_binary[..good_binary.len() - 1].to_vec()).await,
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
        ),
        (
            "binary, trailing byte",
            post_binary(trailing).await,
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
        ),
        (
            "binary, empty",
            post_binary(Vec::new()).await,
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
        ),
        (
            "binary, JSON inside",
            post_binary(good_json.to_string().into()).await,
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
        ),
        (
            "binary, bad signature",
            post_binary(bad_sig_binary).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_signature",
        ),
        (
            "oversized binary",
            post_binary(vec![0; 10_000]).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "oversized",
            post(vec![b' '; 10_000]).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "text/plain",
            client
                .send(
                    Method::POST,
                    "/v1/transactions",
                    Some("text/plain"),
                    good_json.to_string().into(),
                )
                .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            client
                .send(
                    Method::POST,
                    "/v1/transactions",
                    None,
                    good_json.to_string().into(),
                )
                .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "wait=maybe",
            client
                .post_json("/v1/transactions?wait=maybe", good_json.to_string())
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "bad txid",
            client.get("/v1/transactions/xyz").await,
            StatusCode::BAD_REQUEST,
            "bad_txid",
        ),
        (
            "unknown txid",
            client
                .get(&format!("/v1/transactions/{}", "ab".repeat(32)))
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "bad address",
            client.get("/v1/addresses/coffer1nope/balance").await,
            StatusCode::BAD_REQUEST,
            "bad_address",
        ),
        (
            "limit 0",
            client
                .get(&format!(
                    "/v1/addresses/{}/history?limit=0",
                    alice.address()
                ))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "limit too big",
            client
                .get(&format!(
                    "/v1/addresses/{}/utxos?limit=1000000",
                    alice.address()
                ))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "bad cursor",
            client
                .get(&format!(
                    "/v1/addresses/{}/history?cursor=../../x",
                    alice.address()
                ))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "utxo cursor not an outpoint",
            client
                .get(&format!(
                    "/v1/addresses/{}/utxos?cursor=zz:1",
                    alice.address()
                ))
                .await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown query parameter",
            client
                .get(&format!(
                    "/v1/addresses/{}/balance?admin=1",
                    alice.address()
                ))
                .await,
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "height not a number",
            client.get("/v1/blocks/-1").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "range reversed",
            client.get("/v1/blocks?from=5&to=1").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "range too long",
            client.get("/v1/blocks?from=1&to=100000").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "range missing",
            client.get("/v1/blocks").await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown route",
            client.get("/v1/nothing").await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "long path",
            client.get(&format!("/v1/{}", "a".repeat(2000))).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            client
                .send(Method::DELETE, "/v1/status", None, Vec::new())
                .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "get on submit",
            client.get("/v1/transactions").await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (what, reply, status, code) in &cases {
        assert_no_5xx(reply, what);
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (*status, *code),
            "{what}"
        );
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}"
        );
    }
    // None of that changed the ledger.
    assert_eq!(client.get("/v1/status").await.json()["height"], 0);
    server.shutdown().await;
}

/// A replica that signs altered receipts, or sends signatures that do not verify, is caught by
/// verification and outvoted; a gateway that rewrites receipts cannot reach a quorum.
#[tokio::test]
async fn forged_receipts_are_detected() {
    let set = replica_set();
    let liar = common::replica_keys()[3].verifying_key().to_bytes();
    for (mode, reason) in [
        (Byzantine::AltersStatements, DiscardReason::Dissent),
        (Byzantine::BadSignatures, DiscardReason::BadSignature),
    ] {
        let (server, client) = start(MemoryCluster::new(mode), ApiConfig::default()).await;
        let alice = Keypair::from_secret_bytes([61; 32]).expect("key");
        let m = mint(alice.address(), 70, 1);
        let reply = client
            .post_json("/v1/transactions", serde_json::to_vec(&m).expect("json"))
            .await;
        let bundle = outcome(&reply).bundle;
        assert_eq!(
            bundle.receipts.len(),
            4,
            "the gateway returns every receipt it has"
        );
        let v =
            verify_quorum(&bundle.receipts, &set, CHAIN, set.strong_quorum()).expect("2f+1 honest");
        assert_eq!(v.statement.code, "ok");
        assert_eq!(v.signers.len(), 3);
        assert!(!v.signers.contains(&liar));
        assert_eq!(v.discarded.len(), 1, "{mode:?}");
        assert_eq!(
            (v.discarded[0].replica, v.discarded[0].reason),
            (liar, reason),
            "{mode:?}"
        );
        // Asking for all four signatures fails: the liar's does not count.
        assert!(verify_quorum(&bundle.receipts, &set, CHAIN, 4).is_err());

        // Reads: the liar's statement is set aside the same way.
        let reply = client
            .get(&format!("/v1/addresses/{}/balance", alice.address()))
            .await;
        let body = reply.json();
        let result: ReadResult = serde_json::from_value(body["result"].clone()).expect("result");
        let signed: Vec<Signed<ReadStatement>> =
            serde_json::from_value(body["attestations"].clone()).expect("attestations");
        let query = ReadQuery::Balance {
            address: alice.address().to_string(),
        };
        let v = verify_read(&signed, &set, CHAIN, 3, &query, &result).expect("read quorum");
        assert!(!v.signers.contains(&liar));
        server.shutdown().await;

        // A gateway rewriting the result code on all but one receipt gets nowhere.
        let mut tampered = bundle.receipts.clone();
        for r in tampered.iter_mut().skip(1) {
            r.statement.code = "insufficient_funds".into();
        }
        let err = verify_quorum(&tampered, &set, CHAIN, 2).expect_err("tampered");
        assert!(
            matches!(err, QuorumError::NotEnough { best: 1, .. }),
            "{err:?}"
        );
        // And cannot pass the receipts off as another network's.
        let err = verify_quorum(&bundle.receipts, &set, "coffer-other", 2).expect_err("chain");
        assert!(matches!(err, QuorumError::NotEnough { best: 0, .. }));
    }
}

/// Over its rate, a client gets 429 `rate_limited` with Retry-After; others are unaffected.
#[tokio::test]
async fn rate_limit_answers_429() {
    let config = ApiConfig {
        rate_limit: coffer_node::api::limits::RateLimit {
            per_second: 1,
            burst: 3,
            max_clients: 16,
        },
        ..ApiConfig::default()
    };
    let (server, client) = start(MemoryCluster::new(Byzantine::None), config).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(client.get("/v1/status").await);
    }
    assert!(statuses[..3].iter().all(|r| r.status == StatusCode::OK));
    let limited = statuses.last().expect("reply");
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert!(server.metrics().requests("rate_limited", 429) >= 1);
    server.shutdown().await;
}

/// A backend that does not answer in time gives 504 `timeout`.
#[tokio::test]
async fn slow_backend_answers_504() {
    let mut cluster = MemoryCluster::new(Byzantine::None);
    cluster.stall_status = Some(std::time::Duration::from_secs(5));
    let config = ApiConfig {
        request_timeout: std::time::Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let (server, client) = start(cluster, config).await;
    let reply = client.get("/v1/status").await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "timeout")
    );
    server.shutdown().await;
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses: required properties,
/// no additional properties where forbidden, recursively through objects and arrays.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for field in required {
            let field = field.as_str().expect("name");
            assert!(
                value.get(field).is_some(),
                "{at}: missing required {field} in {value}"
            );
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            for key in value.as_object().expect("object").keys() {
                assert!(props.contains_key(key), "{at}: undocumented property {key}");
            }
        }
        for (name, sub) in props {
            if let Some(v) = value.get(name).filter(|v| !v.is_null()) {
                check_schema(doc, sub, v, &format!("{at}.{name}"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, v) in array.iter().enumerate() {
            check_schema(doc, items, v, &format!("{at}[{i}]"));
        }
    }
}

/// Every route of the checked-in OpenAPI document answers as documented: the status is one of
/// the documented ones and the body matches the documented schema. The served document is the
/// checked-in one.
#[tokio::test]
async fn every_documented_route_answers_as_documented() {
    let (server, client) = start(MemoryCluster::new(Byzantine::None), ApiConfig::default()).await;
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("document");
    let alice = Keypair::from_secret_bytes([71; 32]).expect("key");
    let funding = mint(alice.address(), 90, 1);
    client
        .post_json(
            "/v1/transactions",
            serde_json::to_vec(&funding).expect("json"),
        )
        .await;
    let fresh = mint(alice.address(), 10, 2);

    let served = client.get("/v1/openapi.json").await;
    assert_eq!(
        served.json(),
        doc,
        "the served document is the checked-in one"
    );

    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 11);
    for (template, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            let path = template
                .replace("{txid}", &funding.txid().to_string())
                .replace("{address}", &alice.address().to_string())
                .replace("{height}", "1");
            let path = if template == "/v1/blocks" {
                format!("{path}?from=1&to=2")
            } else {
                path
            };
            let reply = match method.as_str() {
                "get" => client.get(&path).await,
                "post" => {
                    client
                        .post_json(&path, serde_json::to_vec(&fresh).expect("json"))
                        .await
                }
                other => panic!("undocumented method {other}"),
            };
            let status = reply.status.as_u16().to_string();
            let documented = &op["responses"][&status];
            assert!(
                documented.is_object(),
                "{method} {template}: status {status} not documented"
            );
            let content = documented["content"].as_object().expect("content");
            let (media, spec) = content.iter().next().expect("one media type");
            let got = reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                got.starts_with(media.as_str()),
                "{method} {template}: content type {got}"
            );
            assert!(
                reply.status.is_success(),
                "{method} {template}: {status} {}",
                String::from_utf8_lossy(&reply.body)
            );
            if media == "application/json" {
                check_schema(
                    &doc,
                    &spec["schema"],
                    &reply.json(),
                    &format!("{method} {template}"),
                );
            }
            // An undocumented method on the same path is refused as documented nowhere.
            let other = if method == "get" {
                Method::PUT
            } else {
                Method::GET
            };
            let refused = client.send(other, &path, None, Vec::new()).await;
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{template}");
            check_schema(
                &doc,
                &serde_json::json!({"$ref": "#/components/schemas/Error"}),
                &refused.json(),
                template,
            );
        }
    }
    // The error envelope of every documented error status matches the Error schema.
    let err = client.get("/v1/transactions/zz").await;
    check_schema(
        &doc,
        &serde_json::json!({"$ref": "#/components/schemas/Error"}),
        &err.json(),
        "error",
    );
    let metrics = String::from_utf8(client.get("/metrics").await.body.to_vec()).expect("utf-8");
    assert!(
        metrics.contains("coffer_api_requests_total{route=\"/v1/transactions\",status=\"200\"}")
    );
    server.shutdown().await;
}

/// Receipts and reads bind the chain id: the same statement for another network is a different
/// message, so its signature cannot be reused.
#[test]
fn receipts_bind_the_chain() {
    let keys = common::replica_keys();
    let s = ReceiptStatement {
        chain_id: CHAIN.into(),
        txid: [1; 32],
        height: 1,
        code: attest::CODE_OK.into(),
        commitment: [2; 32],
    };
    let mut signed = attest::sign(s, &keys[0]).expect("sign");
    signed.statement.chain_id = "coffer-other".into();
    assert!(signed.verify_signature().is_err());
}

/// The documented responses of `method` on the route template matching `path`, if any.
fn documented_statuses(doc: &Value, method: &Method, path: &str) -> Option<Vec<String>> {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').collect();
    for (template, ops) in doc["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t.starts_with('{') || t == s);
        if matches {
            let op = ops.get(method.as_str().to_ascii_lowercase())?;
            return Some(op["responses"].as_object()?.keys().cloned().collect());
        }
    }
    None
}

impl Rng {
    /// One of `items`, chosen at random.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Hundreds of seeded random requests (methods, paths, query strings, content types, bodies
/// from garbage to mutated valid transactions and deeply nested JSON): none gets a 5xx, every
/// error is the JSON envelope, and the server keeps serving.
#[tokio::test]
async fn random_inputs_never_get_5xx() {
    let config = ApiConfig {
        rate_limit: coffer_node::api::limits::RateLimit {
            per_second: 100_000,
            burst: 100_000,
            max_clients: 16,
        },
        max_body_bytes: 8192,
        ..ApiConfig::default()
    };
    let (server, client) = start(MemoryCluster::new(Byzantine::None), config).await;
    let alice = Keypair::from_secret_bytes([81; 32]).expect("key");
    let valid = serde_json::to_string(&mint(alice.address(), 3, 1)).expect("json");
    let funding = mint(alice.address(), 4, 2);
    let funding_txid = funding.txid().to_string();
    client
        .post_json(
            "/v1/transactions",
            serde_json::to_vec(&funding).expect("json"),
        )
        .await;
    let address = alice.address().to_string();
    let mut rng = Rng(0x00c0_ffee_u64);
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("document");
    let mut checked = 0;
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    let prefixes = [
        "/v1/transactions".to_owned(),
        format!("/v1/addresses/{address}/"),
        "/v1/addresses/".to_owned(),
        "/v1/blocks".to_owned(),
        "/v1/blocks/".to_owned(),
        "/v1/".to_owned(),
        "/metrics".to_owned(),
        "/".to_owned(),
    ];
    let tails = [
        "",
        "balance",
        "utxos",
        "history",
        "1",
        "18446744073709551616",
        "x/y/z",
        "..",
        "%zz",
        "?",
    ];
    let queries = [
        "",
        "?limit=1",
        "?limit=-1",
        "?cursor=",
        "?from=0&to=0",
        "?wait=false",
        "?a&b&&",
        "?limit=1&limit=2",
    ];
    let content_types = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some(""),
        Some(SignedTransaction::MEDIA_TYPE),
        None,
    ];
    let safe = b"abcXYZ019-._~:@!$&'()*+,;=/";
    let params = [
        funding_txid.clone(),
        address.clone(),
        "ab".repeat(32),
        "AB".repeat(32),
        "ab".repeat(31),
        "0".to_owned(),
        "1".to_owned(),
        "18446744073709551615".to_owned(),
        "coffer1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq".to_owned(),
        "%00".to_owned(),
        String::new(),
    ];
    let mut bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        valid.clone().into_bytes(),
        "[".repeat(5000).into_bytes(),
        format!("{{\"tx\": {}}}", "1".repeat(400)).into_bytes(),
        b"{\"tx\": null, \"signature\": null}".to_vec(),
        b"\"\\ud800\"".to_vec(),
        vec![b'{'; 9000],
    ];
    let valid_binary = mint(alice.address(), 5, 3).encode();
    bodies.push(valid_binary.clone());
    for _ in 0..20 {
        // A valid transaction, in either encoding, with one byte changed.
        let mut mutated_binary = valid_binary.clone();
        let at = rng.below(mutated_binary.len());
        mutated_binary[at] ^= u8::try_from(1 + rng.below(255)).unwrap_or(1);
        bodies.push(mutated_binary);
        let mut mutated = valid.clone().into_bytes();
        let at = rng.below(mutated.len());
        mutated[at] = *rng.pick(b"{}[]\":,0aZ\\ \x00\xff");
        bodies.push(mutated);
        bodies.push(
            (0..rng.below(300))
                .map(|_| u8::try_from(rng.next() & 0xff).unwrap_or(0))
                .collect(),
        );
    }
    for i in 0..300 {
        let (mut path, method) = if rng.below(2) == 0 {
            let mut path = format!("{}{}", rng.pick(&prefixes), rng.pick(&tails));
            if rng.below(3) == 0 {
                path.extend((0..rng.below(40)).map(|_| char::from(*rng.pick(safe))));
            }
            (path, rng.pick(&methods).clone())
        } else {
            // A documented route with random parameter values and the documented method.
            let param = rng.pick(&params).clone();
            let route = rng.below(8);
            let path = match route {
                0 => "/v1/transactions".to_owned(),
                1 => format!("/v1/transactions/{param}"),
                2 => format!(
                    "/v1/addresses/{param}/{}",
                    rng.pick(&["balance", "utxos", "history"])
                ),
                3 => "/v1/blocks".to_owned(),
                4 => format!("/v1/blocks/{param}"),
                5 => "/v1/supply".to_owned(),
                6 => "/v1/status".to_owned(),
                _ => "/v1/openapi.json".to_owned(),
            };
            (
                path,
                if route == 0 {
                    Method::POST
                } else {
                    Method::GET
                },
            )
        };
        let query = *rng.pick::<&str>(&queries);
        path.push_str(query);
        let content_type = *rng.pick(&content_types);
        let body = rng.pick(&bodies).clone();
        let reply = client.send(method.clone(), &path, content_type, body).await;
        let what = format!("#{i} {method} {path}");
        assert_no_5xx(&reply, &what);
        // On a documented route and method, the status is a documented one (408 and 429 are
        // documented globally in the description; neither can happen here).
        if let Some(statuses) = documented_statuses(&doc, &method, &path) {
            let status = reply.status.as_u16().to_string();
            assert!(
                statuses.contains(&status),
                "{what}: {status} undocumented ({statuses:?})"
            );
            checked += 1;
        }
        if !reply.status.is_success() && path != "/metrics" {
            let code = reply.code();
            assert!(
                code != "<none>" && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{what}: {code}"
            );
        }
    }
    assert!(
        checked > 50,
        "only {checked} requests hit documented routes"
    );
    assert_eq!(client.get("/v1/status").await.status, StatusCode::OK);
    server.shutdown().await;
}

/// Four gateways, one per replica certificate, in front of the same cluster: a client submits
/// through one and reads back through another, verifying both against the genesis.
#[tokio::test]
async fn any_replica_serves_verifiable_answers() {
    let cluster = Arc::new(MemoryCluster::new(Byzantine::None));
    let mut servers = Vec::new();
    for i in 0..4 {
        let server = ApiServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            dev_server_tls(i),
            ApiConfig::default(),
            cluster.clone(),
        )
        .await
        .expect("server");
        servers.push(server);
    }
    let clients: Vec<Client> = servers
        .iter()
        .map(|s| Client::new(s.local_addr(), &dev_ca()))
        .collect();
    let set = replica_set();
    let alice = Keypair::from_secret_bytes([91; 32]).expect("key");
    let m = mint(alice.address(), 42, 1);
    let reply = clients[0]
        .post_json("/v1/transactions", serde_json::to_vec(&m).expect("json"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    for client in &clients[1..] {
        let reply = client.get(&format!("/v1/transactions/{}", m.txid())).await;
        let v = verify_quorum(&receipts(&reply.json()), &set, CHAIN, 3).expect("quorum");
        assert_eq!(v.statement.txid, m.txid().0);
        let body = client
            .get(&format!("/v1/addresses/{}/balance", alice.address()))
            .await
            .json();
        let result: ReadResult = serde_json::from_value(body["result"].clone()).expect("result");
        let signed: Vec<Signed<ReadStatement>> =
            serde_json::from_value(body["attestations"].clone()).expect("attestations");
        let query = ReadQuery::Balance {
            address: alice.address().to_string(),
        };
        verify_read(&signed, &set, CHAIN, 3, &query, &result).expect("read quorum");
        assert_eq!(
            result,
            ReadResult::Balance {
                amount: 42,
                utxo_count: 1
            }
        );
    }
    for server in servers {
        server.shutdown().await;
    }
}
