//! Bounded, seeded fuzzing of every decoder a peer or a client can reach, runnable on stable
//! in CI: random bytes and mutations (bit flips, truncations, splices, inflated length fields)
//! of valid encodings, fed to the consensus block codec, simplex votes and certificates with
//! our ed25519 scheme, the mempool gossip batch codec, the witness message handler and the
//! ledger's transaction decoder. None may panic; whatever decodes must re-encode to the same
//! bytes. `COFFER_FUZZ_ITERS` (default 3000 per input kind) runs longer.
//!
//! The libFuzzer targets in `fuzz/` cover the same decoders with coverage guidance
//! (`cargo fuzz run <target>`, see docs/FAULTS.md).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod xorshift;

use bytes::Bytes;
use coffer_ledger::{
    Amount, ChainId, Genesis, Keypair, Limits, Mint, OutPoint, ReplicaInfo, ReplicaKey,
    SignedTransaction, Transaction, Transfer, TxOut,
};
use coffer_node::{
    consensus::{Scheme, block::Block},
    ledger::LedgerMachine,
    tx::MAX_TX_BYTES,
    witness::{Patience, Witness, WitnessParts},
};
use commonware_codec::{Decode as _, DecodeExt as _, Encode as _, RangeCfg};
use commonware_consensus::{
    simplex::types::{Certificate, Finalize, Notarize, Nullify, Proposal, Vote},
    types::{Epoch, Round, View},
};
use commonware_cryptography::{
    Digestible as _, Hasher as _, Signer as _,
    certificate::Verifier as _,
    ed25519::PrivateKey,
    sha256::{Digest, Sha256},
};
use commonware_utils::ordered::Set;
use std::sync::Arc;
use xorshift::Rng;

fn iterations() -> usize {
    std::env::var("COFFER_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000)
}

/// Input generation from a seeded xorshift64* generator.
impl Rng {
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A mutation of `valid`: flips, overwrites with extreme bytes, truncation, extension,
    /// duplicated slices.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        for _ in 0..=self.below(4) {
            if out.is_empty() {
                out.push(self.next() as u8);
            }
            let at = self.below(out.len());
            match self.below(6) {
                0 => out[at] ^= 1 << self.below(8),
                1 => out[at] = [0x00, 0xff, 0x7f, 0x80][self.below(4)],
                2 => out.truncate(at),
                3 => {
                    let extra = self.bytes(16);
                    out.extend_from_slice(&extra);
                }
                4 => {
                    let end = (at + 1 + self.below(16)).min(out.len());
                    let slice = out[at..end].to_vec();
                    out.splice(at..at, slice);
                }
                _ => {
                    // An inflated varint length: 0xff bytes make the largest continuation.
                    let run = 1 + self.below(5);
                    for i in at..(at + run).min(out.len()) {
                        out[i] = 0xff;
                    }
                }
            }
        }
        out
    }

    /// Random inputs and mutations of `valid`, `iterations()` of each.
    fn inputs(&mut self, valid: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..iterations() {
            out.push(self.bytes(256));
            let base = &valid[self.below(valid.len())];
            out.push(self.mutate(base));
        }
        out
    }
}

/// A binary receipts message (tag 1, count, then length-prefixed statement, replica key,
/// signature and proof per receipt), the format replicas use for receipts; with `proof`, an
/// inclusion proof (index 1 of 2, one path hash).
fn binary_receipts(replica: [u8; 32], proof: bool) -> Vec<u8> {
    use coffer_ledger::attest::{ReceiptStatement, Statement as _};
    let statement = ReceiptStatement {
        chain_id: "fuzz".into(),
        txid: [0xab; 32],
        height: 1,
        code: "ok".into(),
        commitment: [7; 32],
    }
    .encode()
    .unwrap();
    let mut out = vec![1, 0, 1];
    out.extend_from_slice(&(statement.len() as u16).to_be_bytes());
    out.extend_from_slice(&statement);
    out.extend_from_slice(&replica);
    out.extend_from_slice(&[0x55; 64]);
    if proof {
        out.push(1);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&2u32.to_be_bytes());
        out.push(1);
        out.extend_from_slice(&[0x66; 32]);
    } else {
        out.push(0);
    }
    out
}

fn chain() -> ChainId {
    ChainId::new("fuzz").unwrap()
}

fn issuer() -> Keypair {
    Keypair::from_secret_bytes([3; 32]).unwrap()
}

fn sample_txs() -> Vec<SignedTransaction> {
    let issuer = issuer();
    let alice = Keypair::from_secret_bytes([4; 32]).unwrap();
    let mint = issuer.sign_tx(Transaction::Mint(Mint {
        chain_id: chain(),
        issuer: issuer.public_key(),
        nonce: 1,
        outputs: vec![
            TxOut::to_address(Amount(10), alice.address()),
            TxOut::to_address(Amount(20), alice.address()),
        ],
    }));
    let transfer = alice.sign_tx(Transaction::Transfer(Transfer {
        chain_id: chain(),
        signer: alice.public_key(),
        inputs: vec![
            OutPoint {
                txid: mint.txid(),
                vout: 0,
            },
            OutPoint {
                txid: mint.txid(),
                vout: 1,
            },
        ],
        outputs: vec![TxOut::to_address(Amount(30), issuer.address())],
    }));
    vec![mint, transfer]
}

#[test]
fn ledger_transaction_decoder_never_panics_and_is_canonical() {
    let valid: Vec<Vec<u8>> = sample_txs().iter().map(SignedTransaction::encode).collect();
    let mut decoded = 0;
    for input in Rng(1).inputs(&valid) {
        if let Ok(stx) = SignedTransaction::decode(&input) {
            assert_eq!(stx.encode(), input, "non-canonical transaction encoding");
            decoded += 1;
        }
    }
    // The originals are among what the mutator may leave intact; at least they decode.
    assert!(valid.iter().all(|v| SignedTransaction::decode(v).is_ok()));
    let _ = decoded;
}

#[test]
fn block_decoder_never_panics_and_is_canonical() {
    let txs: Vec<Bytes> = sample_txs()
        .iter()
        .map(|t| Bytes::from(t.encode()))
        .collect();
    let valid: Vec<Vec<u8>> = [0, 1, 2]
        .iter()
        .map(|&n| {
            Block {
                parent: Block::genesis("fuzz").digest(),
                height: 7,
                view: 9,
                txs: txs.iter().take(n).cloned().collect(),
            }
            .encode()
            .to_vec()
        })
        .collect();
    for input in Rng(2).inputs(&valid) {
        if let Ok(block) = Block::decode(Bytes::from(input.clone())) {
            assert_eq!(
                block.encode().to_vec(),
                input,
                "non-canonical block encoding"
            );
        }
    }
}

#[test]
fn gossip_batch_decoder_never_panics() {
    let txs: Vec<Bytes> = sample_txs()
        .iter()
        .map(|t| Bytes::from(t.encode()))
        .collect();
    let cfg = (RangeCfg::new(1..=256usize), RangeCfg::new(1..=MAX_TX_BYTES));
    let valid = vec![txs.encode().to_vec()];
    for input in Rng(3).inputs(&valid) {
        if let Ok(batch) = Vec::<Bytes>::decode_cfg(Bytes::from(input.clone()), &cfg) {
            assert_eq!(batch.encode().to_vec(), input);
        }
    }
}

#[test]
fn simplex_vote_and_certificate_decoders_never_panic() {
    let keys: Vec<PrivateKey> = (0..4).map(|i| PrivateKey::from_seed(500 + i)).collect();
    let participants =
        Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>()).unwrap();
    let scheme = Scheme::signer(b"coffer/fuzz/consensus", participants, keys[0].clone()).unwrap();
    let round = Round::new(Epoch::zero(), View::new(5));
    let proposal = Proposal::new(round, View::new(4), Sha256::hash(&[b"payload"]));
    let votes: Vec<Vote<Scheme, Digest>> = vec![
        Vote::Notarize(Notarize::sign(&scheme, proposal.clone()).unwrap()),
        Vote::Finalize(Finalize::sign(&scheme, proposal).unwrap()),
        Vote::Nullify(Nullify::sign::<Digest>(&scheme, round).unwrap()),
    ];
    let valid: Vec<Vec<u8>> = votes.iter().map(|v| v.encode().to_vec()).collect();
    let cert_cfg = scheme.certificate_codec_config();
    let mut g = Rng(4);
    for input in g.inputs(&valid) {
        if let Ok(vote) = Vote::<Scheme, Digest>::decode(Bytes::from(input.clone())) {
            assert_eq!(vote.encode().to_vec(), input, "non-canonical vote");
        }
        // Certificates share the vote layout up to the signatures: the same inputs exercise
        // their tags, proposals and signer bitmaps.
        let _ = Certificate::<Scheme, Digest>::decode_cfg(Bytes::from(input), &cert_cfg);
    }
}

#[tokio::test]
async fn witness_message_handler_never_panics() {
    let keys: Vec<ed25519_dalek::SigningKey> = (1..=4u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]))
        .collect();
    let replicas: Vec<(String, [u8; 32])> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("r{i}"), k.verifying_key().to_bytes()))
        .collect();
    let genesis = Genesis {
        chain_id: chain(),
        issuers: vec![issuer().public_key()],
        replicas: replicas
            .iter()
            .map(|(name, key)| ReplicaInfo {
                name: name.clone(),
                public_key: ReplicaKey(*key),
            })
            .collect(),
        limits: Limits::default(),
    };
    let machine = LedgerMachine::new(genesis).unwrap();
    let (events, _) = tokio::sync::broadcast::channel(16);
    let (witness, mut outbound) = Witness::new(WitnessParts {
        chain_id: chain(),
        key: keys[0].clone(),
        replicas: replicas.clone(),
        ledger: machine.view(),
        store: machine.store(),
        events,
        patience: Patience::default(),
        origins: Default::default(),
    })
    .unwrap();
    let witness: Arc<Witness> = witness;
    // Drain whatever the witness wants to send, so its queue never fills.
    tokio::spawn(async move { while outbound.recv().await.is_some() {} });
    let peer = replicas[1].1;
    let txid = "ab".repeat(32);
    let valid: Vec<Vec<u8>> = [
        r#"{"type":"status","height":3}"#.to_string(),
        format!(r#"{{"type":"receipt_request","txids":["{txid}"]}}"#),
        r#"{"type":"read_request","id":1,"height":0,"query":{"kind":"supply"}}"#.to_string(),
        format!(
            r#"{{"type":"read_response","id":18446744073709551615,"statement":{{"statement":{{}},"attestation":{{"replica":"{txid}","signature":"{}"}}}}}}"#,
            "00".repeat(64)
        ),
        r#"{"type":"status","height":18446744073709551615}"#.to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([binary_receipts(peer, false), binary_receipts(peer, true)])
    .collect();
    for input in Rng(5).inputs(&valid) {
        witness.on_message(peer, &input);
    }
    // Still answers afterwards: a status heartbeat from a peer is accepted.
    witness.on_message(peer, br#"{"type":"status","height":1}"#);
    let heard = witness.peers(0);
    assert!(
        heard
            .iter()
            .any(|(_, key, height, _)| *key == peer && *height == Some(1))
    );
}
