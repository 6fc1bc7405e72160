//! Canonical encoding and JSON forms: round trips, rejection of non-canonical bytes, strict
//! JSON input.
#![allow(clippy::unwrap_used)]

mod common;
use coffer_ledger::encoding::{DecodeError, HARD_MAX_INPUTS};
use coffer_ledger::*;
use common::*;

fn samples() -> Vec<SignedTransaction> {
    let (alice, bob) = (key(10), key(11));
    let m = mint(7, &[(alice.address(), 100), (bob.address(), 5)]);
    let t = transfer(
        &alice,
        &[op(&m, 0)],
        &[(bob.address(), 60), (alice.address(), 40)],
    );
    vec![m, t]
}

#[test]
fn binary_round_trip_and_every_prefix_fails() {
    for stx in samples() {
        let bytes = stx.encode();
        assert_eq!(SignedTransaction::decode(&bytes), Ok(stx.clone()));
        assert_eq!(Transaction::decode(&stx.tx.encode()), Ok(stx.tx.clone()));
        for cut in 0..bytes.len() {
            assert!(
                SignedTransaction::decode(&bytes[..cut]).is_err(),
                "prefix {cut} decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SignedTransaction::decode(&longer),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }
    let block = Block {
        height: 9,
        txs: samples(),
    };
    assert_eq!(Block::decode(&block.encode()), Ok(block.clone()));
    let mut bad = block.encode();
    bad.push(1);
    assert!(Block::decode(&bad).is_err());
}

/// Counts the keys it is asked for, and refuses them all when `refuse` is set.
struct CountingParser {
    asked: std::cell::Cell<u32>,
    refuse: bool,
}

impl KeyParser for CountingParser {
    fn parse_key(&self, bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        self.asked.set(self.asked.get() + 1);
        if self.refuse {
            return Err(KeyError::InvalidPublicKey("refused by the test".into()));
        }
        PublicKey::from_bytes(bytes)
    }
}

#[test]
fn decode_with_parses_the_signer_through_the_given_parser() {
    let parser = CountingParser {
        asked: std::cell::Cell::new(0),
        refuse: false,
    };
    for stx in samples() {
        let bytes = stx.encode();
        assert_eq!(
            SignedTransaction::decode_with(&bytes, &parser),
            Ok(stx.clone())
        );
        assert_eq!(
            SignedTransaction::decode_with(&bytes, &ParseEveryKey),
            Ok(stx)
        );
    }
    assert_eq!(
        parser.asked.get(),
        2,
        "one key per transaction (issuer, signer)"
    );

    let refusing = CountingParser {
        asked: std::cell::Cell::new(0),
        refuse: true,
    };
    let [m, t] = <[SignedTransaction; 2]>::try_from(samples()).unwrap();
    for (stx, what) in [(m, "mint issuer"), (t, "transfer signer")] {
        match SignedTransaction::decode_with(&stx.encode(), &refusing) {
            Err(DecodeError::Invalid { what: w, reason }) => {
                assert_eq!(w, what);
                assert!(reason.contains("refused by the test"), "{reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn non_canonical_bytes_are_refused() {
    let [m, t] = <[SignedTransaction; 2]>::try_from(samples()).unwrap();
    let tb = t.encode();
    // Unknown transaction tag.
    let mut x = tb.clone();
    x[0] = 0x03;
    assert!(matches!(
        SignedTransaction::decode(&x),
        Err(DecodeError::UnknownTag { .. })
    ));
    // Chain id with an upper-case letter.
    let mut x = tb.clone();
    x[2] = b'C';
    assert!(matches!(
        SignedTransaction::decode(&x),
        Err(DecodeError::Invalid {
            what: "chain id",
            ..
        })
    ));
    // Zero-length chain id (length byte 0): the remaining bytes no longer line up.
    let mut x = tb.clone();
    x[1] = 0;
    assert!(SignedTransaction::decode(&x).is_err());
    // Signer that is not a curve point (BIP340 vector 5's key).
    let mut x = tb.clone();
    let off =
        hex::decode("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34").unwrap();
    let key_at = 2 + CHAIN.len();
    x[key_at..key_at + 32].copy_from_slice(&off);
    assert!(matches!(
        SignedTransaction::decode(&x),
        Err(DecodeError::Invalid { .. })
    ));
    // Unknown lock tag in the mint's first output: tag(1) chain(1+11) issuer(32) nonce(8) count(2) amount(8).
    let mut x = m.encode();
    let lock_at = 1 + 1 + CHAIN.len() + 32 + 8 + 2 + 8;
    assert_eq!(x[lock_at], 0x00);
    x[lock_at] = 0x01;
    assert!(matches!(
        SignedTransaction::decode(&x),
        Err(DecodeError::UnknownTag { what: "lock", .. })
    ));
    // Input count above the hard ceiling, and a count larger than the bytes that follow.
    let count_at = key_at + 32;
    let mut x = tb.clone();
    x[count_at..count_at + 2]
        .copy_from_slice(&u16::try_from(HARD_MAX_INPUTS + 1).unwrap().to_le_bytes());
    let err = SignedTransaction::decode(&x).unwrap_err();
    assert!(matches!(err, DecodeError::TooLong { what: "inputs", .. }));
    assert_eq!(RejectCode::from(&err), RejectCode::TooManyInputs);
    let mut x = tb.clone();
    x[count_at..count_at + 2].copy_from_slice(&1000u16.to_le_bytes());
    assert!(matches!(
        SignedTransaction::decode(&x),
        Err(DecodeError::UnexpectedEnd { .. })
    ));
}

#[test]
fn txid_excludes_signature_and_binds_chain() {
    let [m, _] = <[SignedTransaction; 2]>::try_from(samples()).unwrap();
    let resigned = m.tx.clone().sign_with_aux(&issuer(), &[1; 32]);
    assert_ne!(resigned.signature, m.signature);
    assert_eq!(resigned.txid(), m.txid());
    assert_ne!(resigned.wtxid(), m.wtxid());
    let mut other = m.tx.clone();
    if let Transaction::Mint(x) = &mut other {
        x.chain_id = ChainId::new("other").unwrap();
    }
    assert_ne!(other.txid(), m.txid());
}

#[test]
fn identified_transactions_carry_the_ids_of_their_encoding() {
    for stx in samples() {
        let (made, bytes) = IdentifiedTx::encoded(stx.clone());
        assert_eq!(bytes, stx.encode());
        let decoded = IdentifiedTx::decode_with(&bytes, &ParseEveryKey).unwrap();
        for t in [&made, &decoded, &IdentifiedTx::new(stx.clone())] {
            assert_eq!(t.stx(), &stx);
            assert_eq!(t.txid(), stx.txid());
            assert_eq!(t.wtxid(), stx.wtxid());
        }
        assert_ne!(made.txid().0, made.wtxid().0);
        assert_eq!(decoded.into_stx(), stx);
        // Whatever fails to decode fails the same way.
        assert_eq!(
            IdentifiedTx::decode_with(&bytes[..bytes.len() - 1], &ParseEveryKey).map(|_| ()),
            SignedTransaction::decode(&bytes[..bytes.len() - 1]).map(|_| ())
        );
    }
    let block = Block {
        height: 9,
        txs: samples(),
    };
    let encodings: Vec<Vec<u8>> = block.txs.iter().map(SignedTransaction::encode).collect();
    let refs: Vec<&[u8]> = encodings.iter().map(Vec::as_slice).collect();
    assert_eq!(Block::encode_encoded(9, &refs), block.encode());
    assert_eq!(
        Block::encode_encoded(9, &[]),
        Block {
            height: 9,
            txs: Vec::new()
        }
        .encode()
    );
}

#[test]
fn json_forms() {
    let [m, t] = <[SignedTransaction; 2]>::try_from(samples()).unwrap();
    let v: serde_json::Value = serde_json::to_value(&t).unwrap();
    assert_eq!(v["tx"]["type"], "transfer");
    assert_eq!(v["tx"]["chain_id"], CHAIN);
    assert_eq!(v["tx"]["signer"], key(10).public_key().to_string());
    assert_eq!(v["tx"]["inputs"][0]["txid"], m.txid().to_string());
    assert_eq!(v["tx"]["inputs"][0]["vout"], 0);
    assert_eq!(v["tx"]["outputs"][0]["amount"], 60);
    assert_eq!(
        v["tx"]["outputs"][0]["lock"]["address"],
        key(11).address().to_string()
    );
    assert_eq!(v["signature"], t.signature.to_string());
    let mv: serde_json::Value = serde_json::to_value(&m).unwrap();
    assert_eq!(mv["tx"]["type"], "mint");
    assert_eq!(mv["tx"]["nonce"], 7);
    for stx in [m, t] {
        let json = serde_json::to_string(&stx).unwrap();
        assert_eq!(
            serde_json::from_str::<SignedTransaction>(&json).unwrap(),
            stx
        );
    }
    let receipt = Receipt {
        txid: Txid([1; 32]),
        height: 3,
        index: 0,
        outcome: Outcome::Rejected(RejectCode::BadSignature),
    };
    let rv = serde_json::to_value(receipt).unwrap();
    assert_eq!(rv["outcome"]["status"], "rejected");
    assert_eq!(rv["outcome"]["code"], "bad_signature");
    let ok = serde_json::to_value(Outcome::Accepted).unwrap();
    assert_eq!(ok, serde_json::json!({"status": "accepted"}));
}

#[test]
fn json_input_is_strict() {
    let [_, t] = <[SignedTransaction; 2]>::try_from(samples()).unwrap();
    let good: serde_json::Value = serde_json::to_value(&t).unwrap();
    let parse = |v: &serde_json::Value| serde_json::from_value::<SignedTransaction>(v.clone());
    assert!(parse(&good).is_ok());
    let mut v = good.clone();
    v["extra"] = 1.into();
    assert!(parse(&v).is_err(), "unknown top-level field accepted");
    let mut v = good.clone();
    v["tx"]["extra"] = 1.into();
    assert!(parse(&v).is_err(), "unknown tx field accepted");
    let mut v = good.clone();
    v["tx"]["inputs"][0]["extra"] = 1.into();
    assert!(parse(&v).is_err(), "unknown outpoint field accepted");
    let mut v = good.clone();
    v["tx"]["outputs"][0]["extra"] = 1.into();
    assert!(parse(&v).is_err(), "unknown output field accepted");
    let mut v = good.clone();
    v["tx"]["outputs"][0]["amount"] = "60".into();
    assert!(parse(&v).is_err(), "string amount accepted");
    let mut v = good.clone();
    v["tx"]["outputs"][0]["amount"] = serde_json::json!(60.5);
    assert!(parse(&v).is_err(), "float amount accepted");
    let mut v = good.clone();
    v["tx"]["type"] = "burn".into();
    assert!(parse(&v).is_err());
    let mut v = good.clone();
    v["signature"] = t.signature.to_string().to_uppercase().into();
    assert!(parse(&v).is_err(), "upper-case hex accepted");
    let mut v = good.clone();
    v["tx"]["chain_id"] = "Coffer".into();
    assert!(parse(&v).is_err());
    let mut v = good.clone();
    let too_many: Vec<serde_json::Value> = (0..=HARD_MAX_INPUTS)
        .map(|i| serde_json::json!({"txid": Txid([1; 32]).to_string(), "vout": i}))
        .collect();
    v["tx"]["inputs"] = too_many.into();
    assert!(
        parse(&v).is_err(),
        "more inputs than the hard ceiling accepted"
    );
}

mod fuzzish {
    //! Stable-toolchain stand-in for the `fuzz/` targets: random and mutated inputs never panic
    //! the decoders, and whatever decodes re-encodes to the same bytes.
    use super::*;
    use proptest::prelude::*;

    fn check(bytes: &[u8]) {
        if let Ok(stx) = SignedTransaction::decode(bytes) {
            assert_eq!(stx.encode(), bytes);
        }
        let _ = verify_bytes(&genesis(), bytes);
        if let Ok(block) = Block::decode(bytes) {
            assert_eq!(block.encode(), bytes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            check(&bytes);
        }

        #[test]
        fn mutated_valid_encodings(which in 0usize..2, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut bytes = samples()[which].encode();
            for (pos, val) in flips {
                let len = bytes.len();
                bytes[pos % len] = val;
            }
            check(&bytes);
        }
    }
}

#[test]
fn storage_encodings_round_trip_and_are_strict() {
    let mut s = state();
    let alice = key(10);
    let m = mint(1, &[(alice.address(), 9)]);
    let a = apply(&mut s, vec![m.clone(), m.clone()]);
    let c = a.commitment;
    assert_eq!(c.to_bytes().len(), Commitment::ENCODED_LEN);
    assert_eq!(Commitment::from_bytes(&c.to_bytes()), Ok(c));
    assert!(Commitment::from_bytes(&c.to_bytes()[1..]).is_err());
    for r in &a.receipts {
        assert_eq!(Receipt::decode(&r.encode()), Ok(*r));
    }
    assert_eq!(
        a.receipts[1].outcome,
        Outcome::Rejected(RejectCode::MintReplayed)
    );
    let mut bad = a.receipts[1].encode();
    let n = bad.len();
    bad[n - 2..].copy_from_slice(&999u16.to_le_bytes());
    assert!(Receipt::decode(&bad).is_err());
    let (addr, e) = a.change.history[0];
    assert_eq!(addr, alice.address());
    assert_eq!(e.to_bytes().len(), HistoryEntry::ENCODED_LEN);
    assert_eq!(HistoryEntry::from_bytes(&e.to_bytes()), Ok(e));
    let mut bad = e.to_bytes();
    bad[20 + 32] = 7;
    assert!(HistoryEntry::from_bytes(&bad).is_err());
    let (o, out) = a.change.created[0];
    assert_eq!(OutPoint::from_bytes(&o.to_bytes()), Ok(o));
    assert_eq!(TxOut::from_bytes(&out.to_bytes()), Ok(out));
    let mut long = out.to_bytes();
    long.push(0);
    assert!(TxOut::from_bytes(&long).is_err());
}
