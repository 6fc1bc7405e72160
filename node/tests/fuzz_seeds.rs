//! Seed corpus for the libFuzzer target `decode_consensus` (`fuzz/seeds/decode_consensus/`):
//! real encodings of everything that target decodes, so the fuzzer starts from blocks with
//! signed transactions, signed votes and quorum certificates instead of having to discover
//! their layouts from nothing.
//!
//! Every seed is the target's selector byte followed by one encoding: 0 a consensus block
//! (`consensus::block`), 1 a simplex vote, 2 a simplex certificate, 3 a mempool gossip batch.
//! Votes and certificates are signed by the target's participants (ed25519
//! `PrivateKey::from_seed(0..4)`, namespace `coffer/fuzz/consensus`); the certificates hold the
//! votes of three of the four. The transactions in blocks and gossip batches are valid on the
//! `decode_tx` target's genesis (chain `coffer-fuzz`, issuer secret key 1, as in
//! `ledger/tests/fuzz_seeds.rs`).
//!
//! Every seed is deterministic: ed25519 signatures are (RFC 8032), and the ledger's Schnorr
//! signatures take fixed aux randomness. So the test checks both that the generated seeds match
//! the stored files and that every file in the directory decodes and re-encodes to the same
//! bytes, as the fuzz target asserts. Regenerate them only after a deliberate encoding change:
//! `COFFER_BLESS_FUZZ_SEEDS=1 cargo test -p coffer-node --test fuzz_seeds`.
#![allow(clippy::unwrap_used)]

#[path = "../../ledger/tests/fuzz_txs/mod.rs"]
mod fuzz_txs;

use bytes::Bytes;
use coffer_ledger::SignedTransaction;
use coffer_node::{
    consensus::{Scheme, block::Block},
    tx::MAX_TX_BYTES,
};
use commonware_codec::{Decode as _, DecodeExt as _, Encode as _, RangeCfg};
use commonware_consensus::{
    simplex::types::{
        Certificate, Finalization, Finalize, Notarization, Notarize, Nullification, Nullify,
        Proposal, Vote,
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::{
    Digestible as _, Signer as _, certificate::Verifier as _, ed25519::PrivateKey, sha256::Digest,
};
use commonware_parallel::Sequential;
use commonware_utils::{non_empty, ordered::Set, test_rng};
use fuzz_txs::{FUZZ_CHAIN, SampleTxs, read_dir_sorted, sample};
use std::path::PathBuf;

/// The fuzz target's namespace; signatures under another one would not verify there.
const NAMESPACE: &[u8] = b"coffer/fuzz/consensus";
/// The fuzz target's gossip batch limit (the node's `MAX_GOSSIP_BATCH`).
const MAX_GOSSIP_BATCH: usize = 256;

const SELECT_BLOCK: u8 = 0;
const SELECT_VOTE: u8 = 1;
const SELECT_CERTIFICATE: u8 = 2;
const SELECT_GOSSIP: u8 = 3;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode_consensus")
}

/// The four replicas' schemes, each signing as its own participant, over the target's
/// participant set.
fn schemes() -> Vec<Scheme> {
    let keys: Vec<PrivateKey> = (0..4).map(PrivateKey::from_seed).collect();
    let participants =
        Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>()).unwrap();
    keys.into_iter()
        .map(|k| Scheme::signer(NAMESPACE, participants.clone(), k).unwrap())
        .collect()
}

fn wire(txs: &[&SignedTransaction]) -> Vec<Bytes> {
    txs.iter().map(|t| Bytes::from(t.encode())).collect()
}

fn seed(selector: u8, encoding: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + encoding.len());
    out.push(selector);
    out.extend_from_slice(encoding);
    out
}

/// `(file name, bytes)` for every generated seed.
fn generate() -> Vec<(&'static str, Vec<u8>)> {
    let SampleTxs { m1, m2, t1, t2, t3 } = sample();

    // A chain the way consensus builds it: each block links its parent's digest.
    let genesis = Block::genesis(FUZZ_CHAIN);
    let empty = Block {
        parent: genesis.digest(),
        height: 1,
        view: 1,
        txs: Vec::new(),
    };
    let mints = Block {
        parent: empty.digest(),
        height: 2,
        view: 2,
        txs: wire(&[&m1, &m2]),
    };
    let transfers = Block {
        parent: mints.digest(),
        height: 3,
        view: 4,
        txs: wire(&[&t1, &t2, &t3]),
    };

    // Votes on the transfers block (proposed in view 4, after view 3 was nullified).
    let schemes = schemes();
    let proposal = Proposal::new(
        Round::new(Epoch::zero(), View::new(transfers.view)),
        View::new(mints.view),
        transfers.digest(),
    );
    let nullified = Round::new(Epoch::zero(), View::new(3));
    let notarizes: Vec<Notarize<Scheme, Digest>> = schemes[..3]
        .iter()
        .map(|s| Notarize::sign(s, proposal.clone()).unwrap())
        .collect();
    let finalizes: Vec<Finalize<Scheme, Digest>> = schemes[1..]
        .iter()
        .map(|s| Finalize::sign(s, proposal.clone()).unwrap())
        .collect();
    let nullifies: Vec<Nullify<Scheme>> = [0, 1, 3]
        .iter()
        .map(|&i| Nullify::sign::<Digest>(&schemes[i], nullified).unwrap())
        .collect();
    let notarization =
        Notarization::from_notarizes(&schemes[0], non_empty![@&notarizes], &Sequential).unwrap();
    let finalization =
        Finalization::from_finalizes(&schemes[0], non_empty![@&finalizes], &Sequential).unwrap();
    let nullification =
        Nullification::from_nullifies(&schemes[0], non_empty![@&nullifies], &Sequential).unwrap();

    let vote = |v: Vote<Scheme, Digest>| seed(SELECT_VOTE, &v.encode());
    let cert = |c: Certificate<Scheme, Digest>| seed(SELECT_CERTIFICATE, &c.encode());
    let block = |b: &Block| seed(SELECT_BLOCK, &b.encode());
    let gossip = |txs: &[&SignedTransaction]| seed(SELECT_GOSSIP, &wire(txs).encode());
    vec![
        ("block-genesis.bin", block(&genesis)),
        ("block-empty.bin", block(&empty)),
        ("block-mints.bin", block(&mints)),
        ("block-transfers.bin", block(&transfers)),
        (
            "vote-notarize.bin",
            vote(Vote::Notarize(notarizes[0].clone())),
        ),
        (
            "vote-nullify.bin",
            vote(Vote::Nullify(nullifies[0].clone())),
        ),
        (
            "vote-finalize.bin",
            vote(Vote::Finalize(finalizes[0].clone())),
        ),
        (
            "cert-notarization.bin",
            cert(Certificate::Notarization(notarization)),
        ),
        (
            "cert-nullification.bin",
            cert(Certificate::Nullification(nullification)),
        ),
        (
            "cert-finalization.bin",
            cert(Certificate::Finalization(finalization)),
        ),
        ("gossip-1.bin", gossip(&[&m1])),
        ("gossip-3.bin", gossip(&[&t1, &t2, &t3])),
    ]
}

/// Decodes one seed the way `fuzz_targets/decode_consensus.rs` does and returns its
/// re-encoding (selector byte included), or a description of why it does not decode.
fn decode_as_target(scheme: &Scheme, data: &[u8]) -> Result<Vec<u8>, String> {
    let (&selector, rest) = data.split_first().ok_or("empty seed")?;
    let bytes = Bytes::copy_from_slice(rest);
    let encoded = match selector % 4 {
        SELECT_BLOCK => Block::decode(bytes).map_err(|e| e.to_string())?.encode(),
        SELECT_VOTE => Vote::<Scheme, Digest>::decode(bytes)
            .map_err(|e| e.to_string())?
            .encode(),
        SELECT_CERTIFICATE => {
            let cfg = scheme.certificate_codec_config();
            Certificate::<Scheme, Digest>::decode_cfg(bytes, &cfg)
                .map_err(|e| e.to_string())?
                .encode()
        }
        _ => {
            let cfg = (
                RangeCfg::new(1..=MAX_GOSSIP_BATCH),
                RangeCfg::new(1..=MAX_TX_BYTES),
            );
            Vec::<Bytes>::decode_cfg(bytes, &cfg)
                .map_err(|e| e.to_string())?
                .encode()
        }
    };
    Ok(seed(selector, &encoded))
}

#[test]
fn fuzz_seeds_decode_and_are_current() {
    let seeds = generate();
    if std::env::var_os("COFFER_BLESS_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(seeds_dir()).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(seeds_dir().join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let stored = std::fs::read(seeds_dir().join(name)).unwrap();
        assert!(
            stored == *bytes,
            "fuzz/seeds/decode_consensus/{name} is stale: see the module docs"
        );
    }
    // Every stored file, generated or added by hand, is a useful seed: it decodes, and
    // re-encodes to the same bytes, as the fuzz target asserts.
    let scheme = &schemes()[0];
    let files = read_dir_sorted(&seeds_dir());
    assert_eq!(
        files.len(),
        seeds.len(),
        "unexpected files in the seed directory"
    );
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let again =
            decode_as_target(scheme, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(again, bytes, "{}: non-canonical", path.display());
    }
}

/// The seeds are messages a replica would accept, not just bytes that parse: the votes and
/// certificates verify against the target's participants (from the view of participant 0, the
/// target's signer), and each kind of message has a seed.
#[test]
fn fuzz_seed_votes_and_certificates_verify() {
    let scheme = &schemes()[0];
    let mut rng = test_rng();
    let mut selectors = [0usize; 4];
    for (name, bytes) in generate() {
        selectors[usize::from(bytes[0] % 4)] += 1;
        let rest = Bytes::copy_from_slice(&bytes[1..]);
        match bytes[0] {
            SELECT_VOTE => {
                let ok = match Vote::<Scheme, Digest>::decode(rest).unwrap() {
                    Vote::Notarize(v) => v.verify(&mut rng, scheme, &Sequential),
                    Vote::Nullify(v) => v.verify::<_, Digest>(&mut rng, scheme, &Sequential),
                    Vote::Finalize(v) => v.verify(&mut rng, scheme, &Sequential),
                };
                assert!(ok, "{name} does not verify");
            }
            SELECT_CERTIFICATE => {
                let cfg = scheme.certificate_codec_config();
                let cert = Certificate::<Scheme, Digest>::decode_cfg(rest, &cfg).unwrap();
                assert!(
                    cert.verify(&mut rng, scheme, &Sequential),
                    "{name} does not verify"
                );
            }
            _ => {}
        }
    }
    assert!(selectors.iter().all(|&n| n > 0), "{selectors:?}");
}

/// The seeds only match the target while its participants, namespace and gossip limits are the
/// ones used here.
#[test]
fn fuzz_seeds_match_decode_consensus_target() {
    let target = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets/decode_consensus.rs"),
    )
    .unwrap();
    for needle in [
        "(0..4).map(PrivateKey::from_seed)",
        "b\"coffer/fuzz/consensus\"",
        "RangeCfg::new(1..=256usize)",
        "selector % 4",
    ] {
        assert!(
            target.contains(needle),
            "decode_consensus.rs no longer contains {needle}; update this test and re-bless"
        );
    }
}
