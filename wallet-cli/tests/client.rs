//! The client library against four real TLS gateways: verified reads and writes, a lying
//! replica that fools neither `balance` nor `send`, down and hanging replicas skipped, safe
//! resubmission, proven rejections, errors (never success) when nothing can be verified, and
//! JSON submissions to replicas from before binary ones.

mod common;

use coffer_ledger::{Amount, Keypair, OutPoint, SignedTransaction, Transaction, Transfer, TxOut};
use coffer_wallet::error::exit;
use coffer_wallet::{Client, ClientError, ClusterConfig, ProblemKind, TxInfo};
use common::{Behaviour, TestCluster, blackhole, issuer};

use Behaviour::{AnswersPending, Down, Honest, Lagging, Liar, Stall};

fn client_with_keys(config: ClusterConfig, keys: &[(&str, &Keypair)]) -> Client {
    let mut client = Client::new(config).expect("client");
    for (name, key) in keys {
        client.add_key(
            *name,
            Keypair::from_secret_bytes(key.secret_bytes()).expect("key"),
        );
    }
    client
}

/// A cluster of `behaviours`, two fresh wallets (alice, bob) and a client that holds the
/// issuer's and alice's keys.
async fn alice_and_bob(behaviours: [Behaviour; 4]) -> (TestCluster, Client, Keypair, Keypair) {
    let cluster = TestCluster::start(behaviours).await;
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let client = client_with_keys(
        cluster.config(),
        &[("issuer", &issuer()), ("alice", &alice)],
    );
    (cluster, client, alice, bob)
}

/// The verified balance of `who`'s address.
async fn amount(client: &Client, who: &Keypair) -> Amount {
    let address = who.address();
    match client.balance(&address).await {
        Ok(balance) => balance.value.amount,
        Err(e) => panic!("balance of {address}: {e}"),
    }
}

#[tokio::test]
async fn mint_send_and_read_back_verified() {
    let (cluster, client, alice, bob) = alice_and_bob([Honest; 4]).await;

    let minted = client
        .mint("issuer", &alice.address(), Amount(1_000), 1)
        .await
        .expect("mint committed");
    assert_eq!((minted.code.as_str(), minted.height), ("ok", 1));
    assert!(
        minted.signers.len() >= 2,
        "f+1 receipts: {:?}",
        minted.signers
    );

    let paid = client
        .send("alice", &bob.address(), Amount(300))
        .await
        .expect("send committed");
    assert_eq!(paid.height, 2);
    assert!(!paid.replayed);

    let a = client.balance(&alice.address()).await.expect("alice");
    let b = client.balance(&bob.address()).await.expect("bob");
    assert_eq!(
        (a.value.amount, a.value.utxo_count),
        (Amount(700), 1),
        "change came back"
    );
    assert_eq!((b.value.amount, b.value.utxo_count), (Amount(300), 1));
    assert_eq!(a.height, 2);
    assert!(a.problems.is_empty(), "{:?}", a.problems);

    // UTXOs: alice holds exactly the change output of the payment.
    let utxos = client.all_utxos(&alice.address()).await.expect("utxos");
    assert_eq!(
        utxos,
        vec![(
            OutPoint {
                txid: paid.txid,
                vout: 1
            },
            Amount(700)
        )]
    );

    // History, one entry per page, newest first, following the cursor.
    let first = client
        .history_page(&alice.address(), None, 1)
        .await
        .expect("history");
    assert_eq!(first.value.entries.len(), 1);
    assert_eq!(first.value.entries[0].txid, paid.txid.0);
    assert_eq!(first.value.entries[0].sent, 1_000);
    let cursor = first.value.next_cursor.clone().expect("an older page");
    let second = client
        .history_page(&alice.address(), Some(&cursor), 1)
        .await
        .expect("history page 2");
    assert_eq!(second.value.entries[0].txid, minted.txid.0);
    assert_eq!(second.value.next_cursor, None);

    assert_eq!(client.supply().await.expect("supply").value, Amount(1_000));
    match client.transaction(&paid.txid).await.expect("tx") {
        TxInfo::Committed(c) => assert_eq!((c.height, c.code.as_str()), (2, "ok")),
        other => panic!("{other:?}"),
    }
    let blocks = client.blocks(1, 2).await.expect("blocks");
    assert_eq!(blocks.blocks.len(), 2);
    assert_eq!(blocks.blocks[1].transactions[0].txid, paid.txid);
    assert!(blocks.agreed_by.len() >= 2);
    assert_eq!(
        client
            .status()
            .await
            .iter()
            .filter(|r| r.status.is_some())
            .count(),
        4
    );

    // Not enough money: refused before anything is sent.
    let err = client
        .send("alice", &bob.address(), Amount(701))
        .await
        .expect_err("insufficient");
    assert_eq!(
        (err.code().as_str(), err.exit_code()),
        ("insufficient_funds", exit::REJECTED)
    );
    assert_eq!(cluster.shared.height(), 2, "nothing submitted");
    cluster.stop().await;
}

/// The first replica lies about everything. Reads return the truth, the fake commit is not
/// believed, and the payment is applied exactly once.
#[tokio::test]
async fn lying_replica_fools_neither_balance_nor_send() {
    let (cluster, client, alice, bob) = alice_and_bob([Liar, Honest, Honest, Honest]).await;

    // The liar answers first with a commit it never performed; the client goes on to a replica
    // whose receipts verify.
    let minted = client
        .mint("issuer", &alice.address(), Amount(500), 7)
        .await
        .expect("mint");
    assert_eq!(
        minted.height, 1,
        "the real commit, not the liar's height 999"
    );
    assert_ne!(minted.answered_by, "replica-0");
    assert!(
        minted
            .problems
            .iter()
            .any(|p| p.replica == "replica-0" && p.kind == ProblemKind::Unverified),
        "{:?}",
        minted.problems
    );
    assert!(!minted.signers.contains(&"replica-0".to_string()));

    let balance = client.balance(&alice.address()).await.expect("balance");
    assert_eq!(
        balance.value.amount,
        Amount(500),
        "not the liar's inflated 1_000_500"
    );
    assert_eq!(balance.answered_by, "replica-1");
    assert!(balance.problems.iter().any(|p| p.replica == "replica-0"));

    let paid = client
        .send("alice", &bob.address(), Amount(200))
        .await
        .expect("send");
    assert_eq!(paid.height, 2);
    assert_eq!(cluster.shared.height(), 2, "applied once");
    assert_eq!(amount(&client, &bob).await, Amount(200));
    assert_eq!(amount(&client, &alice).await, Amount(300));
    // The liar's extra UTXO never reaches coin selection, nor its doubled supply the user.
    assert_eq!(
        client
            .all_utxos(&alice.address())
            .await
            .expect("utxos")
            .len(),
        1
    );
    assert_eq!(client.supply().await.expect("supply").value, Amount(500));
    match client.transaction(&paid.txid).await.expect("tx") {
        TxInfo::Committed(c) => assert_eq!(c.height, 2),
        other => panic!("{other:?}"),
    }
    let blocks = client.blocks(1, 2).await.expect("blocks");
    assert!(!blocks.agreed_by.contains(&"replica-0".to_string()));
    assert_ne!(blocks.blocks[0].commitment, "ab".repeat(32));
    cluster.stop().await;
}

/// A replica that is down (503) and one that stalls (gateway 504) are skipped; so is an
/// endpoint that never completes TLS (client-side timeout).
#[tokio::test]
async fn down_stalled_and_hanging_replicas_are_skipped() {
    let cluster = TestCluster::start([Down, Stall, Honest, Honest]).await;
    let alice = Keypair::generate();
    let (_hole, hole_url) = blackhole();
    let mut config = cluster.config();
    // Order: replica-2 first but with a hanging URL, then the down one, the stalled one, and
    // replica-3, the only live gateway. The replica set (the keys) is unchanged.
    let r = config.replicas.clone();
    config.replicas = vec![r[2].clone(), r[0].clone(), r[1].clone(), r[3].clone()];
    config.replicas[0].url = hole_url;
    config.request_timeout_ms = 700;
    config.submit_timeout_ms = 1_000;
    let client = client_with_keys(config, &[("issuer", &issuer())]);
    let minted = client
        .mint("issuer", &alice.address(), Amount(42), 1)
        .await
        .expect("mint through the live replicas");
    assert_eq!(minted.height, 1);
    let kinds: Vec<ProblemKind> = minted.problems.iter().map(|p| p.kind).collect();
    assert!(
        kinds.contains(&ProblemKind::Unreachable),
        "{:?}",
        minted.problems
    );
    assert!(kinds.contains(&ProblemKind::Busy), "{:?}", minted.problems);
    assert_eq!(minted.answered_by, "replica-3");
    let balance = client.balance(&alice.address()).await.expect("balance");
    assert_eq!(balance.value.amount, Amount(42));
    assert_eq!(balance.problems.len(), 3, "{:?}", balance.problems);
    cluster.stop().await;
}

/// A spreading client starts at the replica it is told to and then stays with the last one
/// that answered: after one detour around a hanging replica, the next requests go straight
/// to a live one (and reuse its connection).
#[tokio::test]
async fn spreading_client_sticks_to_a_live_replica() {
    let cluster = TestCluster::start([Honest, Honest, Honest, Honest]).await;
    let alice = Keypair::generate();
    let (_hole, hole_url) = blackhole();
    let mut config = cluster.config();
    config.replicas[1].url = hole_url;
    config.request_timeout_ms = 700;
    config.submit_timeout_ms = 1_000;
    let mut client = client_with_keys(config, &[("issuer", &issuer())]);
    client.spread_from(5); // 5 mod 4: the hanging replica-1 first.
    assert_eq!(client.preferred_replica(), 1);
    let minted = client
        .mint("issuer", &alice.address(), Amount(42), 1)
        .await
        .expect("mint");
    assert_eq!(minted.answered_by, "replica-2");
    assert_eq!(minted.problems.len(), 1, "{:?}", minted.problems);
    assert_eq!(client.preferred_replica(), 2);
    for _ in 0..3 {
        let balance = client.balance(&alice.address()).await.expect("balance");
        assert_eq!(balance.value.amount, Amount(42));
        assert_eq!(balance.answered_by, "replica-2");
        assert!(balance.problems.is_empty(), "{:?}", balance.problems);
    }
    cluster.stop().await;
}

/// The same signed transaction submitted twice (as after a timeout) is applied once; the
/// second answer is the original receipt, marked replayed.
#[tokio::test]
async fn resubmitting_is_safe() {
    let cluster = TestCluster::start([Honest; 4]).await;
    let alice = Keypair::generate();
    let client = client_with_keys(cluster.config(), &[("issuer", &issuer())]);
    let tx = client.build_mint(&issuer().public_key(), &alice.address(), Amount(10), 99);
    let signed = client.sign("issuer", tx).expect("sign");
    let first = client.submit(&signed).await.expect("first");
    let again = client.submit(&signed).await.expect("again");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!((again.txid, again.height), (first.txid, first.height));
    assert_eq!(cluster.shared.height(), 1);
    assert_eq!(amount(&client, &alice).await, Amount(10));
    cluster.stop().await;
}

/// A double spend is reported as a rejection proven by f+1 signed receipts; a transaction
/// with a bad signature as a rejection f+1 replicas agree on.
#[tokio::test]
async fn rejections_are_proven() {
    let (cluster, client, alice, bob) = alice_and_bob([Honest; 4]).await;
    let minted = client
        .mint("issuer", &alice.address(), Amount(100), 3)
        .await
        .expect("mint");
    let spend = |to: &Keypair, amount: u64| {
        Transaction::Transfer(Transfer {
            chain_id: client.chain_id().clone(),
            signer: alice.public_key(),
            inputs: vec![OutPoint {
                txid: minted.txid,
                vout: 0,
            }],
            outputs: vec![
                TxOut::to_address(Amount(amount), to.address()),
                TxOut::to_address(Amount(100 - amount), alice.address()),
            ],
        })
    };
    let first = client.sign("alice", spend(&bob, 60)).expect("sign");
    client.submit(&first).await.expect("first spend");
    let second = client.sign("alice", spend(&bob, 61)).expect("sign");
    let err = client.submit(&second).await.expect_err("double spend");
    assert!(
        matches!(&err, ClientError::Rejected { code, .. } if code == "input_already_spent"),
        "{err}"
    );
    assert_eq!(err.exit_code(), exit::REJECTED);

    // Signed by the wrong key: every replica refuses it before ordering.
    let forged =
        bob.sign_tx(client.build_mint(&issuer().public_key(), &bob.address(), Amount(1), 5));
    let err = client.submit(&forged).await.expect_err("bad signature");
    assert_eq!(err.code(), "bad_signature", "{err}");
    // And the client refuses to sign for a key that is not the signer.
    assert!(client.sign("alice", spend(&bob, 1)).is_ok());
    assert!(matches!(
        client.sign("issuer", spend(&bob, 1)),
        Err(ClientError::Usage(_))
    ));
    cluster.stop().await;
}

/// Wrong replica keys in the config: every answer fails verification, so reads and writes are
/// errors (exit 3), never a success. Nothing reachable: unavailable (exit 4).
#[tokio::test]
async fn unverifiable_and_unavailable_are_errors() {
    let cluster = TestCluster::start([Honest; 4]).await;
    let alice = Keypair::generate();
    let client = client_with_keys(cluster.config_with_wrong_keys(), &[("issuer", &issuer())]);
    let err = client
        .balance(&alice.address())
        .await
        .expect_err("unverifiable");
    assert_eq!(err.exit_code(), exit::UNVERIFIABLE, "{err}");
    assert_eq!(err.problems().len(), 4);
    let err = client
        .mint("issuer", &alice.address(), Amount(5), 1)
        .await
        .expect_err("unverifiable commit");
    assert_eq!(err.exit_code(), exit::UNVERIFIABLE, "{err}");

    let client = Client::new(cluster.config_all_down()).expect("client");
    let err = client.supply().await.expect_err("unavailable");
    assert_eq!(err.exit_code(), exit::UNAVAILABLE, "{err}");
    cluster.stop().await;
}

/// A replica that has not executed the latest block answers with genuinely signed but older
/// state. A client that saw the newer block skips it; a fresh client cannot tell (the state is
/// real), unless told the height it saw before.
#[tokio::test]
async fn reads_never_go_back_in_time() {
    let (cluster, client, alice, bob) = alice_and_bob([Lagging, Honest, Honest, Honest]).await;
    client
        .mint("issuer", &alice.address(), Amount(100), 1)
        .await
        .expect("mint");
    cluster.shared.freeze();
    let paid = client
        .send("alice", &bob.address(), Amount(30))
        .await
        .expect("send");
    assert_eq!(client.min_height(), paid.height);

    let b = client.balance(&bob.address()).await.expect("bob");
    assert_eq!((b.value.amount, b.height), (Amount(30), 2));
    assert!(
        b.problems
            .iter()
            .any(|p| p.replica == "replica-0" && p.kind == ProblemKind::Stale),
        "{:?}",
        b.problems
    );

    // What the skipped answer was: a verified, older state.
    let fresh = Client::new(cluster.config()).expect("client");
    let old = fresh.balance(&bob.address()).await.expect("old state");
    assert_eq!((old.value.amount, old.height), (Amount(0), 1));
    fresh.observe_height(2);
    assert_eq!(amount(&fresh, &bob).await, Amount(30));
    cluster.stop().await;
}

/// Every gateway answers `pending`: the client polls the transaction by id until f+1 signed
/// receipts prove the commit.
#[tokio::test]
async fn pending_submissions_are_confirmed_by_receipts() {
    let cluster = TestCluster::start([AnswersPending; 4]).await;
    let alice = Keypair::generate();
    let client = client_with_keys(cluster.config(), &[("issuer", &issuer())]);
    let c = client
        .mint("issuer", &alice.address(), Amount(77), 1)
        .await
        .expect("confirmed by polling");
    assert_eq!((c.height, c.code.as_str()), (1, "ok"));
    assert!(c.signers.len() >= 2);
    assert_eq!(cluster.shared.height(), 1);
    cluster.stop().await;
}

/// The client pins the cluster's CA: gateways whose certificates another CA signed are not
/// talked to at all.
#[tokio::test]
async fn other_ca_is_refused() {
    let cluster = TestCluster::start([Honest; 4]).await;
    let other = coffer_node::api::tls::generate_dev_pki(&["x"], &[]).expect("pki");
    let mut config = cluster.config();
    config.ca_cert = None;
    config.ca_cert_pem = Some(other.ca.cert_pem);
    let client = Client::new(config).expect("client");
    let err = client.supply().await.expect_err("untrusted certificates");
    assert_eq!(err.exit_code(), exit::UNAVAILABLE);
    assert!(
        err.problems().iter().all(|p| p.detail.contains("tls")),
        "{:?}",
        err.problems()
    );
    cluster.stop().await;
}

/// Counts of what an [`old_replica`] front saw.
#[derive(Default)]
struct OldReplicaLog {
    binary_refused: std::sync::atomic::AtomicUsize,
    json_passed: std::sync::atomic::AtomicUsize,
}

/// A replica from before binary submissions, in front of the current gateway at `upstream`:
/// it answers `415 unsupported_media_type` to a transaction in its canonical encoding and
/// passes every other request on. Returns its URL and what it saw.
async fn old_replica(
    index: usize,
    upstream: std::net::SocketAddr,
) -> (String, std::sync::Arc<OldReplicaLog>) {
    use coffer_wallet::net::{Body, Endpoint, Transport};
    use http_body_util::{BodyExt as _, Full};
    use hyper::{Request, Response, StatusCode, body::Incoming, header};
    use std::sync::{Arc, atomic::Ordering};

    let tls = coffer_node::api::tls::TlsSettings::dev(&common::repo_root(), index)
        .load()
        .expect("dev TLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let ca = std::fs::read(common::ca_path()).expect("ca");
    let transport = Arc::new(Transport::new(&ca).expect("transport"));
    let upstream = Arc::new(Endpoint::parse(&format!("https://{upstream}")).expect("endpoint"));
    let log = Arc::new(OldReplicaLog::default());
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, transport, upstream, seen) = (
                acceptor.clone(),
                transport.clone(),
                upstream.clone(),
                seen.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (transport, upstream, seen) =
                        (transport.clone(), upstream.clone(), seen.clone());
                    async move {
                        let method = req.method().clone();
                        let path = req.uri().to_string();
                        let content_type = req
                            .headers()
                            .get(header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let bytes = req.into_body().collect().await?.to_bytes();
                        if content_type.as_deref() == Some(SignedTransaction::MEDIA_TYPE) {
                            seen.binary_refused.fetch_add(1, Ordering::SeqCst);
                            let envelope = r#"{"error":{"code":"unsupported_media_type","message":"content type \"application/octet-stream\", want application/json"}}"#;
                            return Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                                    .header(header::CONTENT_TYPE, "application/json")
                                    .body(Full::new(hyper::body::Bytes::from(envelope)))
                                    .expect("response"),
                            );
                        }
                        if content_type.is_some() {
                            seen.json_passed.fetch_add(1, Ordering::SeqCst);
                        }
                        let body = content_type.map(|_| Body::json(bytes));
                        let reply = transport
                            .request(
                                &upstream,
                                method,
                                &path,
                                body,
                                std::time::Duration::from_secs(5),
                            )
                            .await
                            .expect("upstream answers");
                        Ok(Response::builder()
                            .status(reply.status)
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(reply.body))
                            .expect("response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, log)
}

#[tokio::test]
async fn replicas_without_binary_submissions_get_json() {
    let cluster = TestCluster::start([Honest; 4]).await;
    let mut config = cluster.config();
    let mut logs = Vec::new();
    for (i, replica) in config.replicas.iter_mut().enumerate() {
        let (url, log) = old_replica(i, cluster.servers[i].local_addr()).await;
        replica.url = url;
        logs.push(log);
    }
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let client = client_with_keys(config, &[("issuer", &issuer()), ("alice", &alice)]);
    let minted = client
        .mint("issuer", &alice.address(), Amount(500), 1)
        .await
        .expect("mint committed through old replicas");
    assert_eq!(minted.code, "ok");
    let sent = client
        .send("alice", &bob.address(), Amount(200))
        .await
        .expect("send committed through old replicas");
    assert_eq!(sent.code, "ok");
    let count = |f: fn(&OldReplicaLog) -> usize| logs.iter().map(|l| f(l)).sum::<usize>();
    let refused = count(|l| l.binary_refused.load(std::sync::atomic::Ordering::SeqCst));
    let passed = count(|l| l.json_passed.load(std::sync::atomic::Ordering::SeqCst));
    // Each submission was tried in binary first, refused, and sent again as JSON.
    assert!(refused >= 2, "binary refused {refused} times");
    assert_eq!(passed, refused, "each refusal was followed by JSON");
    let balance = client.balance(&bob.address()).await.expect("balance");
    assert_eq!(balance.value.amount, Amount(200));
    cluster.stop().await;
}
