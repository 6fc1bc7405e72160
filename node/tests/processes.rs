//! Four `coffer-node` processes on loopback (real TCP, authenticated p2p, the real ledger with
//! BIP340 signatures) order and execute the same transactions and end with the same state
//! commitment.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod support;

use coffer_node::{
    ingress::{Client, ServerFrame},
    tx::Txid,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::mpsc,
    time::{Duration, Instant},
};

const N: usize = 4;

struct Observer {
    rx: mpsc::Receiver<(usize, ServerFrame)>,
    executed: Vec<HashMap<Txid, bool>>,
    commitments: Vec<BTreeMap<u64, [u8; 32]>>,
}

impl Observer {
    fn wait_for(&mut self, expected: &HashSet<Txid>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self
            .executed
            .iter()
            .any(|e| !expected.iter().all(|id| e.contains_key(id)))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let (i, frame) = self
                .rx
                .recv_timeout(left)
                .expect("replicas did not execute everything in time");
            match frame {
                ServerFrame::Submitted { status, .. } => {
                    assert_eq!(status, 0, "submission refused")
                }
                ServerFrame::Executed {
                    height,
                    commitment,
                    receipts,
                } => {
                    for (txid, applied) in receipts {
                        assert!(
                            self.executed[i].insert(txid, applied).is_none(),
                            "transaction {txid} executed twice"
                        );
                    }
                    self.commitments[i].insert(height, commitment);
                }
            }
        }
    }
}

#[test]
fn four_processes_agree_on_loopback() {
    let started = Instant::now();
    let (cluster, chain) = support::start_cluster("proc", N);
    let (tx, rx) = mpsc::channel();
    let mut writers: Vec<Client> = Vec::new();
    for (i, addr) in cluster.ingress.iter().enumerate() {
        let client = support::connect(*addr, Duration::from_secs(30));
        writers.push(client.try_clone().expect("clone"));
        let tx = tx.clone();
        let mut reader = client;
        std::thread::spawn(move || {
            while let Ok(frame) = reader.recv() {
                if tx.send((i, frame)).is_err() {
                    return;
                }
            }
        });
    }
    let mut observer = Observer {
        rx,
        executed: vec![HashMap::new(); N],
        commitments: vec![BTreeMap::new(); N],
    };

    // The issuer mints one output to each of 20 wallets, through different replicas.
    let wallets: Vec<_> = (0..20).map(support::wallet).collect();
    let mints: Vec<Vec<u8>> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| support::mint(&chain, i as u64, w, 1, 100))
        .collect();
    let mut expected = HashSet::new();
    for (i, m) in mints.iter().enumerate() {
        expected.insert(support::txid_of(m));
        writers[i % N].send(m).unwrap();
    }
    observer.wait_for(&expected, Duration::from_secs(60));
    assert!(
        expected.iter().all(|id| observer.executed[0][id]),
        "every mint applies"
    );

    // Each wallet pays the next; wallet 0 also tries to spend its output twice.
    let mut transfers: Vec<Vec<u8>> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mint_txid = coffer_ledger::SignedTransaction::decode(&mints[i])
                .unwrap()
                .txid();
            support::spend(&chain, w, mint_txid, 0, 100, &wallets[(i + 1) % 20])
        })
        .collect();
    let first_mint = coffer_ledger::SignedTransaction::decode(&mints[0])
        .unwrap()
        .txid();
    transfers.push(support::spend(
        &chain,
        &wallets[0],
        first_mint,
        0,
        100,
        &wallets[5],
    ));
    let mut expected = HashSet::new();
    for (i, t) in transfers.iter().enumerate() {
        expected.insert(support::txid_of(t));
        writers[i % N].send(t).unwrap();
    }
    observer.wait_for(&expected, Duration::from_secs(60));
    eprintln!(
        "all transactions executed everywhere after {:?}",
        started.elapsed()
    );

    for (i, t) in transfers.iter().enumerate().skip(1).take(19) {
        assert!(
            observer.executed[0][&support::txid_of(t)],
            "transfer {i} rejected"
        );
    }
    let double = [
        observer.executed[0][&support::txid_of(&transfers[0])],
        observer.executed[0][&support::txid_of(&transfers[20])],
    ];
    assert_eq!(
        double.iter().filter(|a| **a).count(),
        1,
        "exactly one of two spends of one output applies"
    );
    // Every replica saw the same outcomes and the same commitment at every height they share.
    for i in 1..N {
        assert_eq!(
            observer.executed[i], observer.executed[0],
            "replica {i} outcomes differ"
        );
        for (height, commitment) in &observer.commitments[i] {
            if let Some(other) = observer.commitments[0].get(height) {
                assert_eq!(other, commitment, "replica {i} diverges at height {height}");
            }
        }
    }
}
