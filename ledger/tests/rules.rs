//! One test per ledger rule and reject code: each asserts the code and that a rejected
//! transaction changed nothing.
#![allow(clippy::unwrap_used)]

mod common;
use coffer_ledger::*;
use common::*;

/// Applies `bad` alone in a block on a clone of `s`; asserts the code and that nothing but the
/// height and state hash moved.
fn assert_rejected(s: &LedgerState, bad: SignedTransaction, code: RejectCode) {
    let mut after = s.clone();
    let applied = apply(&mut after, vec![bad.clone()]);
    assert_eq!(outcomes(&applied), vec![rejected(code)], "{bad:?}");
    let (c0, c1) = (s.commitment(), after.commitment());
    assert_eq!(c0.utxo_hash, c1.utxo_hash);
    assert_eq!(c0.total_supply, c1.total_supply);
    assert_eq!(s.snapshot().utxos, after.snapshot().utxos);
    assert_eq!(s.snapshot().history, after.snapshot().history);
    assert_eq!(s.snapshot().mint_txids, after.snapshot().mint_txids);
    assert!(applied.change.created.is_empty() && applied.change.spent.is_empty());
    assert!(applied.change.history.is_empty() && applied.change.mint_txids.is_empty());
    after.check_integrity().unwrap();
    // The mempool check agrees with apply for stateless codes.
    if let Err(stateless) = s.verify_stateless(&bad) {
        assert_eq!(stateless, code);
    }
}

/// Alice holds one 100-unit output from a mint.
fn funded() -> (LedgerState, Keypair, OutPoint) {
    let mut s = state();
    let alice = key(10);
    let m = mint(1, &[(alice.address(), 100)]);
    let a = apply(&mut s, vec![m.clone()]);
    assert_eq!(outcomes(&a), vec![Outcome::Accepted]);
    (s, alice, op(&m, 0))
}

#[test]
fn mint_and_transfer_are_accepted_and_move_money() {
    let (mut s, alice, coin) = funded();
    let bob = key(11);
    assert_eq!(s.balance(&alice.address()), Amount(100));
    assert_eq!(s.total_supply(), Amount(100));
    let t = transfer(
        &alice,
        &[coin],
        &[(bob.address(), 30), (alice.address(), 70)],
    );
    let a = apply(&mut s, vec![t.clone()]);
    assert_eq!(outcomes(&a), vec![Outcome::Accepted]);
    assert_eq!(s.balance(&alice.address()), Amount(70));
    assert_eq!(s.balance(&bob.address()), Amount(30));
    assert_eq!(s.total_supply(), Amount(100));
    assert_eq!(
        s.utxos(&bob.address()),
        vec![(op(&t, 0), TxOut::to_address(Amount(30), bob.address()))]
    );
    assert_eq!(
        a.change.spent,
        vec![(coin, TxOut::to_address(Amount(100), alice.address()))]
    );
    assert_eq!(a.change.created.len(), 2);
    assert_eq!(a.receipts[0].txid, t.txid());
    assert_eq!(a.receipts[0].height, 2);
    s.check_integrity().unwrap();
}

#[test]
fn bad_signature() {
    let (s, alice, coin) = funded();
    let mut t = transfer(&alice, &[coin], &[(key(11).address(), 100)]);
    t.signature = key(11).sign_msg(&t.tx.sighash());
    assert_rejected(&s, t, RejectCode::BadSignature);
}

#[test]
fn signature_for_another_chain_is_a_bad_signature() {
    let (s, alice, coin) = funded();
    let tx = transfer_tx(&alice, &[coin], &[(key(11).address(), 100)]);
    let mut other = tx.clone();
    if let Transaction::Transfer(t) = &mut other {
        t.chain_id = ChainId::new("other-chain").unwrap();
    }
    let sig = other.sign_with_aux(&alice, &[0; 32]).signature;
    assert_rejected(
        &s,
        SignedTransaction { tx, signature: sig },
        RejectCode::BadSignature,
    );
}

#[test]
fn signature_over_the_bare_txid_is_a_bad_signature() {
    // Domain separation: signing the txid (another message type) does not authorise the tx.
    let (s, alice, coin) = funded();
    let tx = transfer_tx(&alice, &[coin], &[(key(11).address(), 100)]);
    let sig = alice.sign_msg(tx.txid().as_bytes());
    assert_rejected(
        &s,
        SignedTransaction { tx, signature: sig },
        RejectCode::BadSignature,
    );
}

#[test]
fn wrong_chain() {
    let (s, alice, coin) = funded();
    let mut tx = transfer_tx(&alice, &[coin], &[(key(11).address(), 100)]);
    if let Transaction::Transfer(t) = &mut tx {
        t.chain_id = ChainId::new("other-chain").unwrap();
    }
    assert_rejected(&s, tx.sign(&alice), RejectCode::WrongChain);
}

#[test]
fn unknown_input() {
    let (s, alice, _) = funded();
    let ghost = OutPoint {
        txid: Txid([9; 32]),
        vout: 0,
    };
    assert_rejected(
        &s,
        transfer(&alice, &[ghost], &[(alice.address(), 1)]),
        RejectCode::UnknownInput,
    );
}

#[test]
fn an_unknown_input_rejection_is_final() {
    let (mut s, alice, _) = funded();
    let mut follower = s.clone();
    let bob = key(11);
    // A transfer proposed before the mint that creates its input.
    let m = mint(2, &[(alice.address(), 40)]);
    let early = transfer(&alice, &[op(&m, 0)], &[(bob.address(), 40)]);
    let first = apply(&mut s, vec![early.clone()]);
    assert_eq!(outcomes(&first), vec![rejected(RejectCode::UnknownInput)]);
    assert_eq!(first.change.rejected_txids, vec![early.txid()]);
    assert!(s.is_rejected(&early.txid()));
    follower.apply_change(&first.change).unwrap();
    let minted = apply(&mut s, vec![m.clone()]);
    assert_eq!(outcomes(&minted), vec![Outcome::Accepted]);
    assert!(minted.change.rejected_txids.is_empty());
    follower.apply_change(&minted.change).unwrap();
    // Its input exists now; the same transaction still changes nothing, nor does a copy with
    // another signature (same txid, other wtxid).
    assert_rejected(&s, early.clone(), RejectCode::AlreadyRejected);
    let resigned =
        transfer_tx(&alice, &[op(&m, 0)], &[(bob.address(), 40)]).sign_with_aux(&alice, &[7; 32]);
    assert_eq!(resigned.txid(), early.txid());
    assert_ne!(resigned.wtxid(), early.wtxid());
    assert_rejected(&s, resigned, RejectCode::AlreadyRejected);
    // Already remembered: a second rejection does not list it again.
    let again = apply(&mut s, vec![early.clone()]);
    assert_eq!(
        outcomes(&again),
        vec![rejected(RejectCode::AlreadyRejected)]
    );
    assert!(again.change.rejected_txids.is_empty());
    follower.apply_change(&again.change).unwrap();
    assert_eq!(s.rejected_count(), 1);
    // The payment made again as a new transaction (another txid) goes through.
    let reissued = transfer(
        &alice,
        &[op(&m, 0)],
        &[(bob.address(), 39), (alice.address(), 1)],
    );
    let paid = apply(&mut s, vec![reissued]);
    assert_eq!(outcomes(&paid), vec![Outcome::Accepted]);
    assert_eq!(s.balance(&bob.address()), Amount(39));
    follower.apply_change(&paid.change).unwrap();
    // In one block: rejected, its input created, the same txid again: still rejected.
    let m2 = mint(3, &[(alice.address(), 5)]);
    let t = transfer(&alice, &[op(&m2, 0)], &[(bob.address(), 5)]);
    let mixed = apply(&mut s, vec![t.clone(), m2, t.clone()]);
    assert_eq!(
        outcomes(&mixed),
        vec![
            rejected(RejectCode::UnknownInput),
            Outcome::Accepted,
            rejected(RejectCode::AlreadyRejected)
        ]
    );
    assert_eq!(mixed.change.rejected_txids, vec![t.txid()]);
    follower.apply_change(&mixed.change).unwrap();
    s.check_integrity().unwrap();
    // Followers, restored states and snapshots carry the set: the next block's outcomes depend
    // on it.
    assert_eq!(follower, s);
    let snap = s.snapshot();
    let mut expected = vec![early.txid(), t.txid()];
    expected.sort();
    assert_eq!(snap.rejected_txids, expected);
    assert_eq!(LedgerState::restore(genesis(), snap.clone()).unwrap(), s);
    let mut forgetful = snap;
    forgetful.rejected_txids.clear();
    let mut forgetful = LedgerState::restore(genesis(), forgetful).unwrap();
    assert_ne!(forgetful, s);
    assert!(!forgetful.is_rejected(&t.txid()));
    // A change that records a rejection the state already holds is refused.
    let mut dup = apply(&mut s.clone(), vec![]).change;
    dup.rejected_txids.push(t.txid());
    assert!(forgetful.clone().apply_change(&dup).is_ok());
    assert!(s.clone().apply_change(&dup).is_err());
    // A state that forgot would accept it now: what replicas must never disagree on.
    let a = apply(&mut forgetful, vec![t.clone()]);
    assert_eq!(outcomes(&a), vec![Outcome::Accepted]);
    let a = apply(&mut s, vec![t]);
    assert_eq!(outcomes(&a), vec![rejected(RejectCode::AlreadyRejected)]);
}

#[test]
fn input_already_spent_and_replayed_transfer() {
    let (mut s, alice, coin) = funded();
    let t = transfer(&alice, &[coin], &[(key(11).address(), 100)]);
    assert_eq!(
        outcomes(&apply(&mut s, vec![t.clone()])),
        vec![Outcome::Accepted]
    );
    // The exact same signed transfer again: its input is gone.
    assert_rejected(&s, t, RejectCode::InputAlreadySpent);
    let t2 = transfer(&alice, &[coin], &[(alice.address(), 100)]);
    assert_rejected(&s, t2, RejectCode::InputAlreadySpent);
}

#[test]
fn duplicate_input() {
    let (s, alice, coin) = funded();
    assert_rejected(
        &s,
        transfer(&alice, &[coin, coin], &[(alice.address(), 200)]),
        RejectCode::DuplicateInput,
    );
}

#[test]
fn not_owner() {
    let (s, _alice, coin) = funded();
    let mallory = key(66);
    assert_rejected(
        &s,
        transfer(&mallory, &[coin], &[(mallory.address(), 100)]),
        RejectCode::NotOwner,
    );
}

#[test]
fn insufficient_funds() {
    let (s, alice, coin) = funded();
    assert_rejected(
        &s,
        transfer(&alice, &[coin], &[(key(11).address(), 101)]),
        RejectCode::InsufficientFunds,
    );
}

#[test]
fn value_not_conserved() {
    let (s, alice, coin) = funded();
    assert_rejected(
        &s,
        transfer(&alice, &[coin], &[(key(11).address(), 99)]),
        RejectCode::ValueNotConserved,
    );
}

#[test]
fn zero_amount() {
    let (s, alice, coin) = funded();
    let t = transfer(
        &alice,
        &[coin],
        &[(key(11).address(), 100), (alice.address(), 0)],
    );
    assert_rejected(&s, t, RejectCode::ZeroAmount);
    assert_rejected(&s, mint(2, &[(alice.address(), 0)]), RejectCode::ZeroAmount);
}

#[test]
fn amount_overflow() {
    let (s, alice, coin) = funded();
    let big = MAX_SUPPLY.0;
    let t = transfer(
        &alice,
        &[coin],
        &[(alice.address(), big), (alice.address(), 1)],
    );
    assert_rejected(&s, t, RejectCode::AmountOverflow);
    let t = transfer(
        &alice,
        &[coin],
        &[(alice.address(), u64::MAX), (alice.address(), u64::MAX)],
    );
    assert_rejected(&s, t, RejectCode::AmountOverflow);
    assert_rejected(
        &s,
        mint(2, &[(alice.address(), big + 1)]),
        RejectCode::AmountOverflow,
    );
}

#[test]
fn no_inputs_and_no_outputs() {
    let (s, alice, coin) = funded();
    assert_rejected(
        &s,
        transfer(&alice, &[], &[(alice.address(), 1)]),
        RejectCode::NoInputs,
    );
    assert_rejected(&s, transfer(&alice, &[coin], &[]), RejectCode::NoOutputs);
    assert_rejected(&s, mint(2, &[]), RejectCode::NoOutputs);
}

#[test]
fn too_many_inputs_outputs_and_too_large() {
    let limits = Limits {
        max_inputs: 2,
        max_outputs: 2,
        max_tx_bytes: 400,
        ..Limits::default()
    };
    let s = LedgerState::new(genesis_with(limits)).unwrap();
    let alice = key(10);
    let ops: Vec<OutPoint> = (0..3)
        .map(|i| OutPoint {
            txid: Txid([1; 32]),
            vout: i,
        })
        .collect();
    assert_rejected(
        &s,
        transfer(&alice, &ops, &[(alice.address(), 1)]),
        RejectCode::TooManyInputs,
    );
    let outs = vec![(alice.address(), 1); 3];
    assert_rejected(&s, mint(1, &outs), RejectCode::TooManyOutputs);
    // 2 inputs and 2 outputs fit the counts but not 400 bytes? 1+12+32+2+72+2+82+64 = 267: fits.
    let small = transfer(
        &alice,
        &ops[..2],
        &[(alice.address(), 1), (alice.address(), 1)],
    );
    assert!(coffer_ledger::validate::encoded_len(&small) < 400);
    let tight = Limits {
        max_tx_bytes: 266,
        ..limits
    };
    let s2 = LedgerState::new(genesis_with(tight)).unwrap();
    assert_eq!(
        coffer_ledger::validate::encoded_len(&small),
        small.encode().len()
    );
    assert_rejected(&s2, small, RejectCode::TxTooLarge);
}

#[test]
fn not_an_issuer() {
    let s = state();
    let mallory = key(66);
    let m = Transaction::Mint(Mint {
        chain_id: chain(),
        issuer: mallory.public_key(),
        nonce: 1,
        outputs: vec![TxOut::to_address(Amount(5), mallory.address())],
    });
    assert_rejected(&s, m.sign(&mallory), RejectCode::NotAnIssuer);
}

#[test]
fn supply_cap_exceeded() {
    let limits = Limits {
        supply_cap: Amount(1000),
        ..Limits::default()
    };
    let mut s = LedgerState::new(genesis_with(limits)).unwrap();
    let alice = key(10);
    assert_eq!(
        outcomes(&apply(&mut s, vec![mint(1, &[(alice.address(), 600)])])),
        vec![Outcome::Accepted]
    );
    assert_rejected(
        &s,
        mint(2, &[(alice.address(), 401)]),
        RejectCode::SupplyCapExceeded,
    );
    // Exactly reaching the cap is allowed.
    assert_eq!(
        outcomes(&apply(&mut s, vec![mint(3, &[(alice.address(), 400)])])),
        vec![Outcome::Accepted]
    );
    assert_eq!(s.total_supply(), Amount(1000));
}

#[test]
fn mint_replayed() {
    let (mut s, alice, _) = funded();
    // Same mint (same nonce) again, in a later block and re-signed with other aux randomness.
    let again = mint_tx(1, &[(alice.address(), 100)]).sign_with_aux(&issuer(), &[5; 32]);
    assert_rejected(&s, again.clone(), RejectCode::MintReplayed);
    // A fresh nonce is a fresh mint.
    assert_eq!(
        outcomes(&apply(&mut s, vec![mint(2, &[(alice.address(), 100)])])),
        vec![Outcome::Accepted]
    );
    // Twice in one block: the second is a replay.
    let m3 = mint(3, &[(alice.address(), 1)]);
    assert_eq!(
        outcomes(&apply(&mut s, vec![m3.clone(), m3])),
        vec![Outcome::Accepted, rejected(RejectCode::MintReplayed)]
    );
}

#[test]
fn malformed_and_oversize_bytes_through_the_mempool_check() {
    let g = genesis();
    let good = mint(1, &[(key(10).address(), 5)]);
    let bytes = good.encode();
    assert_eq!(verify_bytes(&g, &bytes).map(|(t, _)| t), Ok(good.txid()));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        verify_bytes(&g, &trailing).err(),
        Some(RejectCode::Malformed)
    );
    assert_eq!(
        verify_bytes(&g, &bytes[..bytes.len() - 1]).err(),
        Some(RejectCode::Malformed)
    );
    assert_eq!(verify_bytes(&g, &[]).err(), Some(RejectCode::Malformed));
    let huge = vec![0u8; g.limits.max_tx_bytes as usize + 1];
    assert_eq!(verify_bytes(&g, &huge).err(), Some(RejectCode::TxTooLarge));
    let mut bad_sig = bytes.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 1;
    assert_eq!(
        verify_bytes(&g, &bad_sig).err(),
        Some(RejectCode::BadSignature)
    );
}

#[test]
fn spend_of_output_created_earlier_in_the_same_block() {
    let mut s = state();
    let (alice, bob) = (key(10), key(11));
    let m = mint(1, &[(alice.address(), 50)]);
    let t1 = transfer(&alice, &[op(&m, 0)], &[(bob.address(), 50)]);
    let t2 = transfer(
        &bob,
        &[op(&t1, 0)],
        &[(alice.address(), 20), (bob.address(), 30)],
    );
    let a = apply(&mut s, vec![m.clone(), t1.clone(), t2.clone()]);
    assert_eq!(outcomes(&a), vec![Outcome::Accepted; 3]);
    assert_eq!(s.balance(&alice.address()), Amount(20));
    assert_eq!(s.balance(&bob.address()), Amount(30));
    // Netted change: intermediate outputs appear in neither created nor spent.
    let created: Vec<OutPoint> = a.change.created.iter().map(|(o, _)| *o).collect();
    assert_eq!(created, vec![op(&t2, 0), op(&t2, 1)]);
    assert!(a.change.spent.is_empty());
    assert_eq!(a.change.spent_within_block, vec![op(&m, 0), op(&t1, 0)]);
    s.check_integrity().unwrap();
}

#[test]
fn conflicting_spends_in_one_block_first_wins() {
    let (mut s, alice, coin) = funded();
    let (bob, carol) = (key(11), key(12));
    let to_bob = transfer(&alice, &[coin], &[(bob.address(), 100)]);
    let to_carol = transfer(&alice, &[coin], &[(carol.address(), 100)]);
    let a = apply(&mut s, vec![to_bob, to_carol]);
    assert_eq!(
        outcomes(&a),
        vec![Outcome::Accepted, rejected(RejectCode::InputAlreadySpent)]
    );
    assert_eq!(s.balance(&bob.address()), Amount(100));
    assert_eq!(s.balance(&carol.address()), Amount::ZERO);
}

#[test]
fn wrong_height_and_oversized_block_are_caller_errors() {
    let mut s = state();
    let before = s.clone();
    assert_eq!(
        s.apply(&Block {
            height: 2,
            txs: vec![]
        }),
        Err(ApplyError::WrongHeight {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        s.apply(&Block {
            height: 0,
            txs: vec![]
        })
        .err(),
        Some(ApplyError::WrongHeight {
            expected: 1,
            got: 0
        })
    );
    let limits = Limits {
        max_block_txs: 1,
        ..Limits::default()
    };
    let mut small = LedgerState::new(genesis_with(limits)).unwrap();
    let m = mint(1, &[(key(10).address(), 1)]);
    assert_eq!(
        small
            .apply(&Block {
                height: 1,
                txs: vec![m.clone(), m]
            })
            .err(),
        Some(ApplyError::TooManyTxs { got: 2, max: 1 })
    );
    assert_eq!(s, before);
    assert_eq!(small.height(), 0);
}

#[test]
fn state_hash_chains_blocks_and_commits_to_receipts() {
    let mut a = state();
    let mut b = state();
    assert_eq!(a.commitment().state_hash, genesis().genesis_hash());
    let m = mint(1, &[(key(10).address(), 5)]);
    let ca = apply(&mut a, vec![m.clone()]).commitment;
    let cb = apply(&mut b, vec![m]).commitment;
    assert_eq!(ca, cb);
    // An empty block still advances the chain.
    let e1 = apply(&mut a, vec![]).commitment;
    assert_ne!(e1.state_hash, ca.state_hash);
    assert_eq!(e1.utxo_hash, ca.utxo_hash);
    // A block whose only tx is rejected leaves the UTXO set but not the state hash unchanged,
    // and differs from an empty block (the receipt is committed).
    let bad = mint(1, &[(key(10).address(), 5)]);
    let e2 = apply(&mut b, vec![bad]).commitment;
    assert_eq!(e2.utxo_hash, ca.utxo_hash);
    assert_ne!(e2.state_hash, e1.state_hash);
}

/// A history page of a state that keeps its history.
fn page(s: &LedgerState, address: &Address, cursor: Option<u64>, limit: usize) -> HistoryPage {
    s.history(address, cursor, limit)
        .expect("the state keeps its history")
}

#[test]
fn history_is_newest_first_and_paginates() {
    let mut s = state();
    let alice = key(10);
    for n in 0..5 {
        apply(&mut s, vec![mint(n, &[(alice.address(), 10 + n)])]);
    }
    let p1 = page(&s, &alice.address(), None, 2);
    assert_eq!(
        p1.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(p1.entries[0].received, Amount(14));
    assert_eq!(p1.entries[0].kind, HistoryKind::Mint);
    assert_eq!(p1.next_cursor, Some(2));
    let p2 = page(&s, &alice.address(), p1.next_cursor, 2);
    assert_eq!(
        p2.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let p3 = page(&s, &alice.address(), p2.next_cursor, 2);
    assert_eq!(
        p3.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(p3.next_cursor, None);
    assert!(page(&s, &key(99).address(), None, 10).entries.is_empty());
    assert_eq!(
        page(&s, &alice.address(), Some(u64::MAX), 1).entries[0].seq,
        4
    );
    // Transfers record sent and received per address.
    let coin = OutPoint {
        txid: mint(4, &[(alice.address(), 14)]).txid(),
        vout: 0,
    };
    let bob = key(11);
    apply(
        &mut s,
        vec![transfer(
            &alice,
            &[coin],
            &[(bob.address(), 4), (alice.address(), 10)],
        )],
    );
    let last = page(&s, &alice.address(), None, 1).entries[0];
    assert_eq!(
        (last.kind, last.sent, last.received),
        (HistoryKind::Transfer, Amount(14), Amount(10))
    );
    let bobs = page(&s, &bob.address(), None, 1).entries[0];
    assert_eq!(
        (bobs.sent, bobs.received, bobs.seq),
        (Amount::ZERO, Amount(4), 0)
    );
}

/// A mint to alice and bob, alice paying bob 20 (30 change), then bob paying alice 27 from
/// both his outputs.
fn mint_and_two_transfers(alice: &Keypair, bob: &Keypair) -> [SignedTransaction; 3] {
    let m = mint(1, &[(alice.address(), 50), (bob.address(), 7)]);
    let t = transfer(
        alice,
        &[op(&m, 0)],
        &[(bob.address(), 20), (alice.address(), 30)],
    );
    let t2 = transfer(bob, &[op(&t, 0), op(&m, 1)], &[(alice.address(), 27)]);
    [m, t, t2]
}

#[test]
fn restore_and_apply_change_rebuild_an_identical_state() {
    let mut s = state();
    let mut follower = state();
    let (alice, bob) = (key(10), key(11));
    let [m, t, t2] = mint_and_two_transfers(&alice, &bob);
    for txs in [vec![m], vec![t, t2]] {
        let a = apply(&mut s, txs);
        follower.apply_change(&a.change).unwrap();
    }
    assert_eq!(follower, s);
    let restored = LedgerState::restore(genesis(), s.snapshot()).unwrap();
    assert_eq!(restored, s);
    // Tampered data is refused.
    let mut snap = s.snapshot();
    snap.utxos[0].1.amount = Amount(snap.utxos[0].1.amount.0 + 1);
    assert!(LedgerState::restore(genesis(), snap).is_err());
    let mut snap = s.snapshot();
    snap.utxos.pop();
    assert!(LedgerState::restore(genesis(), snap).is_err());
    let mut snap = s.snapshot();
    snap.history.remove(0);
    assert!(LedgerState::restore(genesis(), snap).is_err());
    // A change for the wrong height is refused.
    let mut again = state();
    let a = apply(&mut s, vec![]);
    assert!(again.apply_change(&a.change).is_err());
}

#[test]
fn history_window_bounds_pages() {
    let w = HistoryWindow::new(5, None, 2);
    assert_eq!((w.start, w.end, w.next_cursor, w.len()), (3, 5, Some(2), 2));
    let w = HistoryWindow::new(5, Some(1), 2);
    assert_eq!((w.start, w.end, w.next_cursor), (0, 2, None));
    // A cursor past the end is the newest entry; u64::MAX does not overflow.
    assert_eq!(HistoryWindow::new(5, Some(u64::MAX), 1).end, 5);
    assert_eq!(HistoryWindow::new(5, Some(9), 10).start, 0);
    // Empty pages: limit 0 (no next cursor), unknown address.
    let w = HistoryWindow::new(5, None, 0);
    assert!(w.is_empty() && w.next_cursor.is_none());
    assert!(HistoryWindow::new(0, None, 10).is_empty());
}

/// A state that only counts history applies blocks exactly like one that keeps it (same
/// receipts, changes and commitments: the entries still go out in each change), answers no
/// page itself, and its windows name the entries the keeping state serves.
#[test]
fn counted_history_matches_kept_history() {
    let mut kept = state();
    let mut counted = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
    assert_eq!(counted.history_mode(), HistoryMode::Counted);
    let (alice, bob) = (key(10), key(11));
    let [m, t, t2] = mint_and_two_transfers(&alice, &bob);
    let mut changes = Vec::new();
    for txs in [vec![m], vec![t.clone()], vec![t2]] {
        let a = apply(&mut kept, txs.clone());
        let b = apply(&mut counted, txs);
        assert_eq!(a, b);
        changes.extend(a.change.history);
    }
    assert_eq!(changes.len(), 6);
    assert!(counted.history(&alice.address(), None, 10).is_none());
    for who in [&alice, &bob] {
        let a = who.address();
        assert_eq!(counted.history_len(&a), kept.history_len(&a));
        for (cursor, limit) in [(None, 1), (None, 10), (Some(1), 1), (Some(0), 5)] {
            let w = counted.history_window(&a, cursor, limit);
            assert_eq!(w, kept.history_window(&a, cursor, limit));
            let p = page(&kept, &a, cursor, limit);
            let seqs: Vec<u64> = p.entries.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (w.start..w.end).rev().collect::<Vec<_>>());
            assert_eq!(p.next_cursor, w.next_cursor);
        }
    }
    assert_eq!(counted.history_len(&alice.address()), 3);
    counted.check_integrity().unwrap();

    // Snapshots: counts instead of entries, and each mode restores from what it needs.
    let snap = counted.snapshot();
    assert!(snap.history.is_empty());
    assert_eq!(snap.history_lengths.len(), 2);
    let restored =
        LedgerState::restore_with(genesis(), snap.clone(), HistoryMode::Counted).unwrap();
    assert_eq!(restored, counted);
    assert!(LedgerState::restore(genesis(), snap.clone()).is_err());
    let from_entries =
        LedgerState::restore_with(genesis(), kept.snapshot(), HistoryMode::Counted).unwrap();
    assert_eq!(from_entries, counted);
    // A count and entries for the same address contradict each other.
    let mut both = kept.snapshot();
    both.history_lengths = snap.history_lengths.clone();
    assert!(LedgerState::restore_with(genesis(), both, HistoryMode::Counted).is_err());

    // A counting follower numbers new entries after the counts it restored.
    let mut follower = restored;
    let coin = op(&t, 1);
    let t3 = transfer(&alice, &[coin], &[(bob.address(), 30)]);
    let a = apply(&mut kept, vec![t3]);
    follower.apply_change(&a.change).unwrap();
    assert_eq!(
        follower.history_len(&bob.address()),
        kept.history_len(&bob.address())
    );
    assert_eq!(follower.commitment(), kept.commitment());
}

#[test]
fn genesis_validation() {
    let g = genesis();
    g.validate().unwrap();
    assert_eq!((g.n(), g.f(), g.quorum(), g.receipt_quorum()), (1, 0, 1, 1));
    let mut four = g.clone();
    four.replicas = (0..4u8)
        .map(|i| ReplicaInfo {
            name: format!("r{i}"),
            public_key: ReplicaKey([i + 1; 32]),
        })
        .collect();
    four.validate().unwrap();
    assert_eq!((four.f(), four.quorum(), four.receipt_quorum()), (1, 3, 2));
    let mut e = g.clone();
    e.issuers.clear();
    assert_eq!(e.validate(), Err(GenesisError::NoIssuers));
    let mut e = g.clone();
    e.issuers.push(e.issuers[0]);
    assert!(matches!(
        e.validate(),
        Err(GenesisError::DuplicateIssuer(_))
    ));
    let mut e = four.clone();
    e.replicas.pop();
    assert_eq!(e.validate(), Err(GenesisError::BadReplicaCount(3)));
    let mut e = four.clone();
    e.replicas[1].public_key = e.replicas[0].public_key;
    assert!(matches!(
        e.validate(),
        Err(GenesisError::DuplicateReplicaKey(_))
    ));
    let mut e = four.clone();
    e.replicas[2].public_key = ReplicaKey([0; 32]);
    assert!(matches!(e.validate(), Err(GenesisError::ZeroReplicaKey(_))));
    let mut e = four.clone();
    e.replicas[1].name = "r0".into();
    assert!(matches!(
        e.validate(),
        Err(GenesisError::DuplicateReplicaName(_))
    ));
    let mut e = g.clone();
    e.limits.supply_cap = Amount(MAX_SUPPLY.0 + 1);
    assert!(matches!(
        e.validate(),
        Err(GenesisError::BadLimit {
            name: "supply_cap",
            ..
        })
    ));
    let mut e = g.clone();
    e.limits.max_inputs = 0;
    assert!(matches!(
        e.validate(),
        Err(GenesisError::BadLimit {
            name: "max_inputs",
            ..
        })
    ));
    assert!(LedgerState::new(e).is_err());
    // JSON round trip, hash stability and sensitivity.
    let back = Genesis::from_json(&g.to_json()).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.genesis_hash(), g.genesis_hash());
    assert_ne!(four.genesis_hash(), g.genesis_hash());
    let json = g.to_json().replacen("{", "{\"extra\": 1,", 1);
    assert!(matches!(
        Genesis::from_json(&json),
        Err(GenesisError::Json(_))
    ));
    // A genesis may name only the limits it changes; the spent horizon is in the hash, and a
    // zero horizon is refused.
    let mut v: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
    v["limits"] = serde_json::json!({ "spent_horizon": 100_000 });
    let longer = Genesis::from_json(&v.to_string()).unwrap();
    assert_eq!(longer.limits.spent_horizon, 100_000);
    assert_eq!(
        Limits {
            spent_horizon: 10_000,
            ..longer.limits
        },
        Limits::default()
    );
    assert_ne!(longer.genesis_hash(), g.genesis_hash());
    v["limits"] = serde_json::json!({ "spent_horizon": 0 });
    assert!(matches!(
        Genesis::from_json(&v.to_string()),
        Err(GenesisError::BadLimit {
            name: "spent_horizon",
            ..
        })
    ));
}

#[test]
fn signature_cache_skips_only_cached_signatures() {
    use std::collections::HashSet;
    let (s, alice, coin) = funded();
    let good = transfer(&alice, &[coin], &[(key(11).address(), 100)]);
    let mut forged = transfer(&alice, &[coin], &[(key(12).address(), 100)]);
    forged.signature = key(12).sign_msg(&forged.tx.sighash());
    // Empty cache: identical to apply.
    let empty: HashSet<Hash32> = HashSet::new();
    let mut a = s.clone();
    let mut b = s.clone();
    let block = Block {
        height: 2,
        txs: vec![forged.clone(), good.clone()],
    };
    assert_eq!(a.apply(&block), b.apply_with_cache(&block, &empty));
    assert_eq!(a, b);
    // A cached wtxid is trusted (the cache is local by contract); structure is still checked.
    let cache: HashSet<Hash32> = [good.wtxid()].into_iter().collect();
    let mut c = s.clone();
    let applied = c
        .apply_with_cache(
            &Block {
                height: 2,
                txs: vec![forged, good.clone()],
            },
            &cache,
        )
        .unwrap();
    assert_eq!(
        outcomes(&applied),
        vec![rejected(RejectCode::BadSignature), Outcome::Accepted]
    );
    let mut wrong_chain = good.clone();
    if let Transaction::Transfer(t) = &mut wrong_chain.tx {
        t.chain_id = ChainId::new("other").unwrap();
    }
    let cache: HashSet<Hash32> = [wrong_chain.wtxid()].into_iter().collect();
    let mut d = s.clone();
    let applied = d
        .apply_with_cache(
            &Block {
                height: 2,
                txs: vec![wrong_chain],
            },
            &cache,
        )
        .unwrap();
    assert_eq!(outcomes(&applied), vec![rejected(RejectCode::WrongChain)]);
}

#[test]
fn many_unverified_signatures_are_checked_in_parallel_with_the_same_outcomes() {
    use std::collections::HashSet;
    let mut s = state();
    let alice = key(10);
    let m = mint(1, &vec![(alice.address(), 100); 20]);
    apply(&mut s, vec![m.clone()]);
    let mut txs: Vec<SignedTransaction> = (0..20)
        .map(|i| transfer(&alice, &[op(&m, i)], &[(key(11).address(), 100)]))
        .collect();
    txs[7].signature = key(12).sign_msg(&txs[7].tx.sighash());
    let block = Block { height: 2, txs };
    let mut want = vec![Outcome::Accepted; 20];
    want[7] = rejected(RejectCode::BadSignature);
    // Nothing cached: 20 signatures to check, enough for the thread pool.
    let empty: HashSet<Hash32> = HashSet::new();
    let mut a = s.clone();
    assert_eq!(outcomes(&a.apply_with_cache(&block, &empty).unwrap()), want);
    // All but the forged one cached: one check, done in place. Same outcomes, same state.
    let cache: HashSet<Hash32> = block
        .txs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, t)| t.wtxid())
        .collect();
    let mut b = s.clone();
    assert_eq!(outcomes(&b.apply_with_cache(&block, &cache).unwrap()), want);
    assert_eq!(a, b);
}

#[test]
fn restore_refuses_corrupt_amounts_without_panicking() {
    let (s, alice, _) = funded();
    let mut snap = s.snapshot();
    let extra = OutPoint {
        txid: Txid([3; 32]),
        vout: 0,
    };
    snap.utxos
        .push((extra, TxOut::to_address(Amount(u64::MAX), alice.address())));
    assert!(matches!(
        LedgerState::restore(genesis(), snap),
        Err(RestoreError::Inconsistent(_))
    ));
    let mut snap = s.snapshot();
    snap.utxos.push(snap.utxos[0]);
    assert!(matches!(
        LedgerState::restore(genesis(), snap),
        Err(RestoreError::Inconsistent(_))
    ));
    let mut snap = s.snapshot();
    snap.spent.push((1, snap.utxos[0].0));
    assert!(matches!(
        LedgerState::restore(genesis(), snap),
        Err(RestoreError::Inconsistent(_))
    ));
}

#[test]
fn spent_outputs_are_remembered_for_the_horizon_then_unknown() {
    let genesis = || {
        genesis_with(Limits {
            spent_horizon: 3,
            ..Limits::default()
        })
    };
    let mut s = LedgerState::new(genesis()).unwrap();
    let mut follower = LedgerState::new(genesis()).unwrap();
    let alice = key(10);
    let m = mint(1, &[(alice.address(), 100), (alice.address(), 5)]);
    let t = transfer(&alice, &[op(&m, 0)], &[(alice.address(), 100)]);
    // The mint (height 1), the spend of its first output (height 2).
    for txs in [vec![m.clone()], vec![t]] {
        let a = apply(&mut s, txs);
        assert_eq!(a.change.spent_from, 1);
        follower.apply_change(&a.change).unwrap();
    }
    let again = transfer(&alice, &[op(&m, 0)], &[(alice.address(), 100)]);
    // Heights 3, 4 and 5 are within three blocks of the spend.
    for height in 3..=5 {
        assert_rejected(&s, again.clone(), RejectCode::InputAlreadySpent);
        assert!(s.is_spent(&op(&m, 0)));
        let a = apply(&mut s, vec![]);
        assert_eq!(a.change.commitment.height, height);
        // The spends of height 2 are forgotten with block 5: from then on 3..=5 are kept.
        assert_eq!(a.change.spent_from, height.saturating_sub(3) + 1);
        follower.apply_change(&a.change).unwrap();
        assert_eq!(follower, s);
    }
    // Height 6: the spend at 2 is beyond the horizon, as unknown as an outpoint never made.
    assert!(!s.is_spent(&op(&m, 0)));
    assert_rejected(&s, again.clone(), RejectCode::UnknownInput);
    // Restored from its snapshot, the state is the same and forgets the same way.
    let restored = LedgerState::restore(genesis(), s.snapshot()).unwrap();
    assert_eq!(restored, s);
    // Forgetting does not let anything be created twice or spent again: the output is gone.
    let a = apply(&mut s, vec![again]);
    assert_eq!(outcomes(&a), vec![rejected(RejectCode::UnknownInput)]);
    assert_eq!(s.balance(&alice.address()), Amount(105));
    s.check_integrity().unwrap();

    // A snapshot listing a spend older than the horizon, or above the tip, is refused.
    let mut snap = s.snapshot();
    snap.spent.push((2, op(&m, 0)));
    assert!(matches!(
        LedgerState::restore(genesis(), snap),
        Err(RestoreError::Inconsistent(_))
    ));
    let mut snap = s.snapshot();
    snap.spent.push((s.height() + 1, op(&m, 0)));
    assert!(LedgerState::restore(genesis(), snap).is_err());
    // A change that forgets other spends than the follower would is refused.
    let mut tampered = a.change.clone();
    tampered.spent_from += 1;
    assert!(follower.clone().apply_change(&tampered).is_err());
    follower.apply_change(&a.change).unwrap();
    assert_eq!(follower, s);
}
