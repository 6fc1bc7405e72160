//! Four `coffer-node` processes on loopback (real TCP, authenticated p2p, real signatures)
//! order and execute the same transfers and end with the same state commitment.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod support;

use coffer_node::{devledger::Transfer, ingress::ServerFrame, tx::Txid};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use std::{
    collections::{BTreeMap, HashSet},
    sync::mpsc,
    time::{Duration, Instant},
};

#[test]
fn four_processes_agree_on_loopback() {
    let accounts: Vec<PrivateKey> = (0..40).map(PrivateKey::from_seed).collect();
    let started = Instant::now();
    let cluster = support::start_cluster("proc", 4, &accounts, 1_000);
    let recipient = PrivateKey::from_seed(99_999).public_key();

    // One reader thread per replica collects executed blocks (height -> commitment, txids).
    let (tx, rx) = mpsc::channel();
    let mut writers = Vec::new();
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

    let mut expected = HashSet::new();
    for (k, account) in accounts.iter().enumerate() {
        let transfer = Transfer::sign(account, &recipient, 7, 0);
        expected.insert(coffer_node::devledger::txid(&transfer));
        writers[k % 4].send(&transfer).expect("send");
    }

    let mut executed: Vec<HashSet<Txid>> = vec![HashSet::new(); 4];
    let mut commitments: Vec<BTreeMap<u64, [u8; 32]>> = vec![BTreeMap::new(); 4];
    let deadline = Instant::now() + Duration::from_secs(60);
    while executed.iter().any(|e| !expected.is_subset(e)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, frame) = rx
            .recv_timeout(left)
            .expect("replicas stopped executing in time");
        match frame {
            ServerFrame::Submitted { status, .. } => assert_eq!(status, 0, "submission refused"),
            ServerFrame::Executed {
                height,
                commitment,
                receipts,
            } => {
                for (txid, applied) in receipts {
                    assert!(applied, "transfer {txid} rejected");
                    assert!(executed[i].insert(txid), "transfer {txid} executed twice");
                }
                commitments[i].insert(height, commitment);
            }
        }
    }
    // Every replica saw the same commitment at every height they both executed.
    for i in 1..4 {
        for (height, commitment) in &commitments[i] {
            if let Some(other) = commitments[0].get(height) {
                assert_eq!(other, commitment, "replica {i} diverges at height {height}");
            }
        }
    }
    eprintln!(
        "all transfers executed everywhere after {:?}",
        started.elapsed()
    );
    let common = commitments
        .iter()
        .map(|c| c.keys().max().copied().unwrap_or(0))
        .min();
    assert!(common.unwrap_or(0) > 0);
}
