//! Property tests: random sequences of valid and invalid mints and transfers, in random
//! blocks, keep the ledger's invariants and are applied identically by independent instances.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tiny bounded test counters

mod common;
use coffer_ledger::*;
use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

const WALLETS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    /// `nonce` from a small range so that replays happen.
    Mint { to: usize, amount: u64, nonce: u8 },
    /// `picks` index into the sender's UTXOs, or (when `stale`) into every outpoint ever seen.
    Transfer {
        from: usize,
        to: usize,
        picks: Vec<usize>,
        pay: u64,
        stale: bool,
        fault: u8,
    },
    /// Resubmits an earlier transaction (accepted or not), byte for byte.
    Replay { pick: usize },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..WALLETS, prop_oneof![8 => 1u64..1000, 1 => Just(0), 1 => Just(MAX_SUPPLY.0)], 0u8..6)
            .prop_map(|(to, amount, nonce)| Op::Mint { to, amount, nonce }),
        3 => (0..WALLETS, 0..WALLETS, prop::collection::vec(0usize..8, 1..4), 0u64..1200, prop::bool::weighted(0.15), 0u8..12)
            .prop_map(|(from, to, picks, pay, stale, fault)| Op::Transfer { from, to, picks, pay, stale, fault }),
        1 => any::<usize>().prop_map(|pick| Op::Replay { pick }),
    ]
}

fn blocks_strategy() -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(prop::collection::vec(op_strategy(), 0..10), 1..8)
}

/// Turns abstract ops into signed transactions against the current state. Faults 0..=5 are
/// deliberate corruptions; others are honest attempts (which may still fail, e.g. on balance).
fn build(
    s: &LedgerState,
    ops: &[Op],
    seen: &[OutPoint],
    wallets: &[Keypair],
    earlier: &[SignedTransaction],
) -> Vec<SignedTransaction> {
    let mut txs: Vec<SignedTransaction> = Vec::new();
    for op in ops {
        match op {
            Op::Replay { pick } => {
                let n = earlier.len() + txs.len();
                if n > 0 {
                    let i = pick % n;
                    let stx = match earlier.get(i) {
                        Some(e) => e.clone(),
                        None => txs[i - earlier.len()].clone(),
                    };
                    txs.push(stx);
                }
            }
            Op::Mint { to, amount, nonce } => {
                txs.push(mint(
                    u64::from(*nonce),
                    &[(wallets[*to].address(), *amount)],
                ));
            }
            Op::Transfer {
                from,
                to,
                picks,
                pay,
                stale,
                fault,
            } => {
                let sender = &wallets[*from];
                let mine: Vec<OutPoint> = s
                    .utxos(&sender.address())
                    .into_iter()
                    .map(|(o, _)| o)
                    .collect();
                let pool: &[OutPoint] = if *stale { seen } else { &mine };
                if pool.is_empty() {
                    continue;
                }
                let mut inputs: Vec<OutPoint> =
                    picks.iter().map(|p| pool[p % pool.len()]).collect();
                inputs.sort();
                inputs.dedup();
                let total: u64 = inputs
                    .iter()
                    .filter_map(|o| s.utxo(o))
                    .map(|o| o.amount.0)
                    .sum();
                let pay = if total == 0 {
                    *pay
                } else {
                    (*pay % total).max(1)
                };
                let mut outs = vec![(wallets[*to].address(), pay)];
                if total > pay {
                    outs.push((sender.address(), total - pay));
                }
                let mut signer = sender.clone();
                match fault {
                    0 => inputs.push(inputs[0]),
                    1 => inputs.push(OutPoint {
                        txid: Txid([0xee; 32]),
                        vout: 0,
                    }),
                    2 => outs[0].1 += 1,
                    3 => signer = wallets[(from + 1) % WALLETS].clone(),
                    4 => outs.push((sender.address(), 0)),
                    _ => {}
                }
                let mut stx = transfer(&signer, &inputs, &outs);
                if *fault == 5 {
                    stx.signature = wallets[*to].sign_msg(&stx.tx.sighash());
                }
                txs.push(stx);
            }
        }
    }
    txs
}

/// A key-value store that applies `Change`s the way the node's Redis layer must.
#[derive(Default)]
struct Store {
    utxos: BTreeMap<OutPoint, TxOut>,
    /// Spent outpoints by the height that spent them.
    spent: BTreeMap<u64, Vec<OutPoint>>,
    history: Vec<(Address, HistoryEntry)>,
    mint_txids: BTreeSet<Txid>,
    rejected_txids: BTreeSet<Txid>,
    tip: Option<Commitment>,
}

impl Store {
    fn persist(&mut self, c: &Change) {
        let height = c.commitment.height;
        for (o, out) in &c.spent {
            assert_eq!(self.utxos.remove(o).as_ref(), Some(out));
            self.spent.entry(height).or_default().push(*o);
        }
        for o in &c.spent_within_block {
            self.spent.entry(height).or_default().push(*o);
        }
        self.spent.retain(|h, _| *h >= c.spent_from);
        for (o, out) in &c.created {
            assert!(self.utxos.insert(*o, *out).is_none());
        }
        self.history.extend(c.history.iter().copied());
        self.mint_txids.extend(c.mint_txids.iter().copied());
        for t in &c.rejected_txids {
            assert!(
                self.rejected_txids.insert(*t),
                "rejection of {t} persisted twice"
            );
        }
        self.tip = Some(c.commitment);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            commitment: self.tip,
            utxos: self.utxos.iter().map(|(o, t)| (*o, *t)).collect(),
            // Grouped by height, not sorted: restore must not depend on the order.
            spent: self
                .spent
                .iter()
                .flat_map(|(h, ops)| ops.iter().map(move |o| (*h, *o)))
                .collect(),
            // Deliberately newest first: restore must not depend on the order.
            history: self.history.iter().rev().copied().collect(),
            history_lengths: Vec::new(),
            mint_txids: self.mint_txids.iter().copied().collect(),
            rejected_txids: self.rejected_txids.iter().copied().collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ledger_invariants_hold(blocks in blocks_strategy(), horizon in 1u32..6) {
        // A short spent horizon, so that spent outputs are forgotten within the run.
        let genesis = || genesis_with(Limits { spent_horizon: horizon, ..Limits::default() });
        let state = || LedgerState::new(genesis()).unwrap();
        let wallets: Vec<Keypair> = (0..WALLETS).map(|i| key(20 + i as u8)).collect();
        let mut s = state();
        let mut twin = state();
        // Counts history instead of keeping it, as a replica does.
        let mut counted = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
        let mut follower = state();
        // When each outpoint was spent, to check each rejection of a spent input.
        let mut spent_at: BTreeMap<OutPoint, u64> = BTreeMap::new();
        let mut minted: u64 = 0;
        let mut seen: Vec<OutPoint> = Vec::new();
        let mut ever_spent: HashSet<OutPoint> = HashSet::new();
        let mut earlier: Vec<SignedTransaction> = Vec::new();
        // Txids rejected as `unknown_input` so far: never accepted afterwards.
        let mut rejected_unknown: HashSet<Txid> = HashSet::new();
        let mut store = Store::default();
        // Every wallet starts with a few coins so that most transfers have something to spend.
        let funding: Vec<Op> = (0..WALLETS * 2)
            .map(|i| Op::Mint { to: i % WALLETS, amount: 500, nonce: 100 + i as u8 })
            .collect();
        for ops in std::iter::once(funding).chain(blocks) {
            let txs = build(&s, &ops, &seen, &wallets, &earlier);
            earlier.extend(txs.iter().cloned());
            let block = Block { height: s.height() + 1, txs };
            let a = s.apply(&block).unwrap();
            // The twin applies the transactions as a replica does: decoded from their bytes,
            // with the ids taken from those bytes.
            let identified: Vec<IdentifiedTx> = block
                .txs
                .iter()
                .map(|stx| IdentifiedTx::decode_with(&stx.encode(), &ParseEveryKey).unwrap())
                .collect();
            let refs: Vec<&IdentifiedTx> = identified.iter().collect();
            let b = twin.apply_identified(block.height, &refs, &NoCache).unwrap();
            // Determinism: two instances agree on receipts, change and commitment.
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&counted.apply(&block).unwrap(), &a);
            follower.apply_change(&a.change).unwrap();
            store.persist(&a.change);
            prop_assert_eq!(&follower, &s);

            let mut newly_rejected = Vec::new();
            for (r, stx) in a.receipts.iter().zip(&block.txs) {
                prop_assert_eq!(r.txid, stx.txid());
                let stateless = verify_stateless(&genesis(), stx);
                // A rejection as `unknown_input` is final: a copy that passes the stateless
                // checks is `already_rejected`, in this block or any later one.
                if rejected_unknown.contains(&r.txid) {
                    if stateless.is_ok() {
                        prop_assert_eq!(r.outcome, Outcome::Rejected(RejectCode::AlreadyRejected));
                    }
                    prop_assert!(r.outcome != Outcome::Accepted);
                    continue;
                }
                if r.outcome == Outcome::Rejected(RejectCode::UnknownInput) {
                    rejected_unknown.insert(r.txid);
                    newly_rejected.push(r.txid);
                }
                // A transfer whose first input was spent in an earlier block fails on it: as
                // spent within the horizon, as unknown after it.
                if let Transaction::Transfer(t) = &stx.tx
                    && let Some(h) = t.inputs.first().and_then(|i| spent_at.get(i))
                    && stateless.is_ok()
                    && let Outcome::Rejected(code) = r.outcome
                {
                    {
                        let expected = if block.height <= h + u64::from(horizon) {
                            RejectCode::InputAlreadySpent
                        } else {
                            RejectCode::UnknownInput
                        };
                        prop_assert_eq!(code, expected, "input spent at {}, spent again at {}", h, block.height);
                    }
                }
                if r.outcome == Outcome::Accepted {
                    if let Transaction::Mint(m) = &stx.tx {
                        minted += m.outputs.iter().map(|o| o.amount.0).sum::<u64>();
                    }
                    for (vout, _) in stx.tx.outputs().iter().enumerate() {
                        seen.push(OutPoint { txid: r.txid, vout: vout as u32 });
                    }
                }
            }
            prop_assert_eq!(&a.change.rejected_txids, &newly_rejected);
            // No outpoint is ever spent twice, across blocks or within one.
            for o in a.change.spent.iter().map(|(o, _)| *o).chain(a.change.spent_within_block.iter().copied()) {
                prop_assert!(ever_spent.insert(o), "{} spent twice", o);
                spent_at.insert(o, block.height);
            }
            // Exactly the last `horizon` blocks' spends are remembered.
            for (o, h) in &spent_at {
                prop_assert_eq!(s.is_spent(o), block.height < h + u64::from(horizon));
            }
            // Supply is exactly what was minted, and within the cap.
            prop_assert_eq!(s.total_supply(), Amount(minted));
            prop_assert!(s.total_supply() <= genesis().limits.supply_cap);
            // Balances are sums of UTXOs.
            for w in &wallets {
                let sum: u64 = s.utxos(&w.address()).iter().map(|(_, o)| o.amount.0).sum();
                prop_assert_eq!(s.balance(&w.address()), Amount(sum));
            }
            // Incremental UTXO hash equals a from-scratch recomputation.
            prop_assert_eq!(s.recompute_utxo_hash(), s.commitment().utxo_hash);
            s.check_integrity().unwrap();
        }
        // A replica restored from persisted data is identical: both from the state's own
        // snapshot and from a store that only ever saw the `Change`s (as Redis does).
        let restored = LedgerState::restore(genesis(), s.snapshot()).unwrap();
        prop_assert_eq!(&restored, &s);
        let from_changes = LedgerState::restore(genesis(), store.snapshot()).unwrap();
        prop_assert_eq!(&from_changes, &s);
        prop_assert_eq!(twin.commitment(), s.commitment());
        // The counting state restores from the same store, and from its own counts.
        counted.check_integrity().unwrap();
        let counted_from_changes =
            LedgerState::restore_with(genesis(), store.snapshot(), HistoryMode::Counted).unwrap();
        prop_assert_eq!(&counted_from_changes, &counted);
        let counted_restored =
            LedgerState::restore_with(genesis(), counted.snapshot(), HistoryMode::Counted).unwrap();
        prop_assert_eq!(&counted_restored, &counted);
        for w in &wallets {
            let a = w.address();
            prop_assert_eq!(counted.history_len(&a), s.history_len(&a));
        }
    }
}
