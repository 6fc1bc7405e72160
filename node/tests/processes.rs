//! Four `coffer-node` processes on loopback (real TCP, authenticated p2p, the real ledger with
//! BIP340 signatures, the REST API over TLS) order and execute the same transactions and end
//! with the same state commitments.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod support;

use coffer_ledger::SignedTransaction;
use hyper::StatusCode;
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};
use support::{ProcessCluster, spend, wallet};

const N: usize = 4;

/// Submits every transaction through replica `i % N` at once, each on its own connection, and
/// waits for each commit; returns each answer's status and body.
async fn submit_all(
    cluster: &ProcessCluster,
    txs: &[SignedTransaction],
) -> Vec<(StatusCode, Value)> {
    let mut tasks = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        let mut conn = cluster.connect(i % N, Duration::from_secs(30)).await;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let reply = conn.submit(&tx, true).await.expect("submit");
            (reply.status, reply.json())
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("submit task"));
    }
    out
}

/// The receipt bundle of a submission answer (a rejection carries it in its details).
fn bundle(answer: &Value) -> &Value {
    if answer.get("bundle").is_some() {
        &answer["bundle"]
    } else {
        &answer["error"]["details"]["bundle"]
    }
}

/// Every block 1..=`height` as replica `i` reports it: (commitment, [(txid, code)]).
async fn blocks(
    cluster: &ProcessCluster,
    i: usize,
    height: u64,
) -> BTreeMap<u64, (String, Vec<(String, String)>)> {
    let mut conn = cluster.connect(i, Duration::from_secs(10)).await;
    let mut out = BTreeMap::new();
    let mut from = 1;
    while from <= height {
        let to = (from + 99).min(height);
        let page = conn
            .get_json(&format!("/v1/blocks?from={from}&to={to}"))
            .await
            .expect("blocks");
        for b in page["blocks"].as_array().expect("blocks array") {
            let txs = b["transactions"]
                .as_array()
                .expect("transactions")
                .iter()
                .map(|t| {
                    (
                        t["txid"].as_str().unwrap().to_owned(),
                        t["code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            out.insert(
                b["height"].as_u64().unwrap(),
                (b["commitment"].as_str().unwrap().to_owned(), txs),
            );
        }
        from = to + 1;
    }
    out
}

#[test]
fn four_processes_agree_on_loopback() {
    agree("proc", "");
}

/// The same on commonware's io_uring runtime (`[runtime] engine = "io_uring"`): consensus,
/// p2p and their storage on rings, the REST gateway on tokio beside them. Where io_uring is
/// refused, a replica configured for it must refuse to start instead.
#[test]
fn four_processes_agree_on_io_uring() {
    if support::io_uring_or_refusal("proc-uring-refused") {
        agree("proc-uring", support::IO_URING);
    }
}

/// Four replicas, each config with `extra` appended, commit mints and transfers sent through
/// every replica, reject a double spend, and list the same blocks.
fn agree(name: &str, extra: &str) {
    let started = Instant::now();
    let cluster = support::start_cluster(name, N, |config| config + extra);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let chain = cluster.chain.clone();
        // The issuer mints one output to each of 20 wallets, through different replicas.
        let wallets: Vec<_> = (0..20).map(wallet).collect();
        let mints: Vec<SignedTransaction> = wallets
            .iter()
            .enumerate()
            .map(|(i, w)| support::mint(&chain, &cluster.issuer, i as u64, w, 1, 100))
            .collect();
        let minted = submit_all(&cluster, &mints).await;
        for (i, (status, answer)) in minted.iter().enumerate() {
            assert_eq!(*status, StatusCode::OK, "mint {i}: {answer}");
            assert_eq!(bundle(answer)["code"], "ok", "mint {i}: {answer}");
            assert!(
                bundle(answer)["receipts"].as_array().unwrap().len() >= 2,
                "f+1 signed receipts: {answer}"
            );
        }

        // Each wallet pays the next; wallet 0 also tries to spend its output twice.
        let mut transfers: Vec<SignedTransaction> = wallets
            .iter()
            .enumerate()
            .map(|(i, w)| spend(&chain, w, mints[i].txid(), 0, 100, &wallets[(i + 1) % 20]))
            .collect();
        transfers.push(spend(
            &chain,
            &wallets[0],
            mints[0].txid(),
            0,
            100,
            &wallets[5],
        ));
        let answers = submit_all(&cluster, &transfers).await;
        eprintln!("all transactions committed after {:?}", started.elapsed());
        for (i, (status, answer)) in answers.iter().enumerate().skip(1).take(19) {
            assert_eq!(*status, StatusCode::OK, "transfer {i}: {answer}");
        }
        let codes: Vec<&str> = [&answers[0].1, &answers[20].1]
            .iter()
            .map(|a| bundle(a)["code"].as_str().unwrap_or("<none>"))
            .collect();
        assert_eq!(
            codes.iter().filter(|c| **c == "ok").count(),
            1,
            "exactly one of two spends of one output applies: {codes:?}"
        );
        assert!(
            codes.contains(&"input_already_spent"),
            "the other is rejected by the ledger: {codes:?}"
        );

        // Every replica executed the same blocks with the same outcomes and commitments, up to
        // the height of the last commit. An answer needs only f+1 replicas' receipts, so a
        // replica may still be behind that height: wait for it.
        let height = minted
            .iter()
            .chain(&answers)
            .map(|(_, answer)| bundle(answer)["height"].as_u64().expect("commit height"))
            .max()
            .expect("answers");
        for i in 0..N {
            let mut conn = cluster.connect(i, Duration::from_secs(10)).await;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = conn.get_json("/v1/status").await.unwrap();
                let at = status["height"].as_u64().unwrap();
                if at >= height {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {i} still at height {at}, below the last commit at {height}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let first = blocks(&cluster, 0, height).await;
        assert_eq!(first.len() as u64, height, "replica 0 serves every block");
        let all: HashSet<String> = mints
            .iter()
            .chain(&transfers)
            .map(|t| t.txid().to_string())
            .collect();
        let included: Vec<&String> = first
            .values()
            .flat_map(|(_, txs)| txs.iter().map(|(id, _)| id))
            .collect();
        let mut seen: BTreeMap<&String, Vec<(u64, &String)>> = BTreeMap::new();
        for (height, (_, txs)) in &first {
            for (id, code) in txs {
                seen.entry(id).or_default().push((*height, code));
            }
        }
        let repeated: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
        assert_eq!(
            included.len(),
            all.len(),
            "each transaction executed once; repeated (txid, [(height, code)]): {repeated:?}; \
             replica logs under {} with COFFER_KEEP_LOGS set",
            cluster.dir.display()
        );
        assert_eq!(included.into_iter().cloned().collect::<HashSet<_>>(), all);
        for i in 1..N {
            assert_eq!(
                blocks(&cluster, i, height).await,
                first,
                "replica {i} diverges from replica 0 below height {height}"
            );
        }
    });
}
