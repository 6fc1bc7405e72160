//! The bridge between the ledger's types and the store's bytes: what the executor calls.
//!
//! [`persist_applied`] turns the ledger's [`Applied`] (receipts, [`Change`], commitment) into a
//! [`BlockChange`] and persists it with the block; [`restore_ledger`] loads a [`Snapshot`],
//! decodes it and rebuilds the [`LedgerState`] with [`LedgerState::restore`], which recomputes
//! the UTXO-set hash and supply from the restored outputs and refuses a mismatch with the
//! persisted commitment; the rebuilt state's commitment is then compared field by field with
//! the persisted one.

use coffer_ledger::encoding::{Reader, Writer};
use coffer_ledger::{
    Address, Amount, Applied, Block, Commitment, Genesis, Hash32, HistoryEntry, HistoryKind,
    HistoryMode, LedgerState, OutPoint, Outcome, Receipt, RejectCode, TxOut, Txid,
};

use super::{
    BlockChange, CreatedOutput, HistoryItem, Snapshot, SpentOutput, StorageError, Store, TxItem,
};

/// Encoded commitment length: `height u64le | state_hash [32] | utxo_hash [32] | supply u64le`.
pub const COMMITMENT_LEN: usize = 80;
/// Encoded history entry length: the entry without its seq, which the store keeps beside it
/// (`HistoryItem::seq`). 61 bytes, so a Redis history member (varint seq and entry) fits the
/// 64 bytes Redis keeps in its compact encoding.
const HISTORY_LEN: usize = 8 + 4 + 32 + 1 + 8 + 8;
/// Encoded receipt length (the ledger's `Receipt::encode`).
const RECEIPT_LEN: usize = 46;

/// Encodes a commitment for storage.
pub fn encode_commitment(c: &Commitment) -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMITMENT_LEN);
    out.extend_from_slice(&c.height.to_le_bytes());
    out.extend_from_slice(&c.state_hash.0);
    out.extend_from_slice(&c.utxo_hash.0);
    out.extend_from_slice(&c.total_supply.0.to_le_bytes());
    out
}

fn corrupt(what: &str, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt {
        key: what.to_owned(),
        reason: reason.to_string(),
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn arr32(b: &[u8], at: usize) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[at..at + 32]);
    a
}

/// Decodes a stored commitment.
pub fn decode_commitment(b: &[u8]) -> Result<Commitment, StorageError> {
    if b.len() != COMMITMENT_LEN {
        return Err(corrupt("commitment", format!("{} bytes", b.len())));
    }
    Ok(Commitment {
        height: le_u64(b, 0),
        state_hash: Hash32(arr32(b, 8)),
        utxo_hash: Hash32(arr32(b, 40)),
        total_supply: Amount(le_u64(b, 72)),
    })
}

fn encode_history(e: &HistoryEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(HISTORY_LEN);
    out.extend_from_slice(&e.height.to_le_bytes());
    out.extend_from_slice(&e.index.to_le_bytes());
    out.extend_from_slice(&e.txid.0);
    out.push(match e.kind {
        HistoryKind::Mint => 0,
        HistoryKind::Transfer => 1,
    });
    out.extend_from_slice(&e.received.0.to_le_bytes());
    out.extend_from_slice(&e.sent.0.to_le_bytes());
    out
}

/// Decodes a stored history entry: `height u64le | index u32le | txid [32] | kind u8 |
/// received u64le | sent u64le`, with its seq from the store.
pub fn decode_history(seq: u64, b: &[u8]) -> Result<HistoryEntry, StorageError> {
    if b.len() != HISTORY_LEN {
        return Err(corrupt("history entry", format!("{} bytes", b.len())));
    }
    let mut idx = [0u8; 4];
    idx.copy_from_slice(&b[8..12]);
    let kind = match b[44] {
        0 => HistoryKind::Mint,
        1 => HistoryKind::Transfer,
        k => return Err(corrupt("history entry", format!("kind {k}"))),
    };
    Ok(HistoryEntry {
        seq,
        height: le_u64(b, 0),
        index: u32::from_le_bytes(idx),
        txid: Txid(arr32(b, 12)),
        kind,
        received: Amount(le_u64(b, 45)),
        sent: Amount(le_u64(b, 53)),
    })
}

/// Decodes a stored receipt (the ledger's `Receipt::encode` layout).
pub fn decode_receipt(b: &[u8]) -> Result<Receipt, StorageError> {
    if b.len() != RECEIPT_LEN {
        return Err(corrupt("receipt", format!("{} bytes", b.len())));
    }
    let mut idx = [0u8; 4];
    idx.copy_from_slice(&b[40..44]);
    let code = u16::from_le_bytes([b[44], b[45]]);
    let outcome = if code == 0 {
        Outcome::Accepted
    } else {
        Outcome::Rejected(
            RejectCode::from_u16(code)
                .ok_or_else(|| corrupt("receipt", format!("outcome code {code}")))?,
        )
    };
    Ok(Receipt {
        txid: Txid(arr32(b, 0)),
        height: le_u64(b, 32),
        index: u32::from_le_bytes(idx),
        outcome,
    })
}

fn encode_outpoint(op: &OutPoint) -> Vec<u8> {
    let mut w = Writer::new();
    op.encode(&mut w);
    w.into_bytes()
}

fn encode_txout(out: &TxOut) -> Vec<u8> {
    let mut w = Writer::new();
    out.encode(&mut w);
    w.into_bytes()
}

fn decode_outpoint(b: &[u8]) -> Result<OutPoint, StorageError> {
    let mut r = Reader::new(b);
    let op = OutPoint::decode(&mut r).map_err(|e| corrupt("outpoint", e))?;
    r.finish().map_err(|e| corrupt("outpoint", e))?;
    Ok(op)
}

fn decode_txout(b: &[u8]) -> Result<TxOut, StorageError> {
    let mut r = Reader::new(b);
    let out = TxOut::decode(&mut r).map_err(|e| corrupt("output", e))?;
    r.finish().map_err(|e| corrupt("output", e))?;
    Ok(out)
}

/// The store's view of what applying a block changed (receipts become the by-txid records).
pub fn block_change(applied: &Applied) -> BlockChange {
    let c = &applied.change;
    BlockChange {
        created: c
            .created
            .iter()
            .map(|(op, out)| CreatedOutput {
                outpoint: encode_outpoint(op),
                amount: out.amount.0,
                output: encode_txout(out),
            })
            .collect(),
        spent: c
            .spent
            .iter()
            .map(|(op, _)| SpentOutput {
                outpoint: encode_outpoint(op),
            })
            .collect(),
        spent_in_block: c.spent_within_block.iter().map(encode_outpoint).collect(),
        spent_from: c.spent_from,
        history: c
            .history
            .iter()
            .map(|(a, e)| HistoryItem {
                address: a.to_string(),
                seq: e.seq,
                entry: encode_history(e),
            })
            .collect(),
        txs: applied
            .receipts
            .iter()
            .map(|r| TxItem {
                txid: r.txid.0,
                record: r.encode(),
            })
            .collect(),
        mints: c.mint_txids.iter().map(|t| t.0).collect(),
        rejected: c.rejected_txids.iter().map(|t| t.0).collect(),
        block_record: encode_commitment(&c.commitment),
        commitment: encode_commitment(&c.commitment),
        supply: c.commitment.total_supply.0,
    }
}

/// Persists a block the ledger applied; returns once durable (see [`Store::persist`]). Only
/// then may the replica sign the block's receipts.
pub async fn persist_applied<S: Store>(
    store: &S,
    block: &Block,
    applied: &Applied,
) -> Result<(), StorageError> {
    persist_encoded(store, block.height, &block.encode(), applied).await
}

/// [`persist_applied`] with the block at `height` already encoded ([`Block::encode`]).
pub async fn persist_encoded<S: Store>(
    store: &S,
    height: u64,
    block: &[u8],
    applied: &Applied,
) -> Result<(), StorageError> {
    if applied.commitment.height != height {
        return Err(StorageError::InvalidChange(format!(
            "commitment at height {} for block {height}",
            applied.commitment.height
        )));
    }
    let mut change = block_change(applied);
    // A txid's first committed outcome is its record. A transaction finalized again later (a
    // client retry that reached a replica before it executed the first copy) is rejected as
    // spent, replayed or already rejected; that repeat must not overwrite the original receipt.
    // Only rejected transactions can be repeats: a txid already committed was either accepted
    // (its inputs are spent, a mint is remembered) or rejected for good (the ledger remembers
    // the one rejection, `unknown_input`, that could otherwise turn into an acceptance). So the
    // lookups are rare; every honest replica holds the same records, so the rule is
    // deterministic.
    let mut repeats = Vec::new();
    for r in &applied.receipts {
        if matches!(r.outcome, Outcome::Rejected(_)) && store.tx(&r.txid.0).await?.is_some() {
            repeats.push(r.txid.0);
        }
    }
    if !repeats.is_empty() {
        change.txs.retain(|t| !repeats.contains(&t.txid));
    }
    store.persist(height, block, &change).await
}

/// Converts a stored snapshot to the ledger's.
pub fn ledger_snapshot(s: &Snapshot) -> Result<coffer_ledger::Snapshot, StorageError> {
    let commitment = decode_commitment(&s.commitment)?;
    if commitment.height != s.height {
        return Err(corrupt(
            "commitment",
            format!(
                "height {} at applied height {}",
                commitment.height, s.height
            ),
        ));
    }
    Ok(coffer_ledger::Snapshot {
        commitment: Some(commitment),
        utxos: s
            .utxos
            .iter()
            .map(|(op, out)| Ok((decode_outpoint(op)?, decode_txout(out)?)))
            .collect::<Result<_, StorageError>>()?,
        spent: s
            .spent
            .iter()
            .map(|(h, op)| Ok((*h, decode_outpoint(op)?)))
            .collect::<Result<_, StorageError>>()?,
        history: Vec::new(),
        history_lengths: s
            .history_lengths
            .iter()
            .map(|(address, len)| {
                let a: Address = address.parse().map_err(|e| corrupt("history address", e))?;
                Ok((a, *len))
            })
            .collect::<Result<_, StorageError>>()?,
        mint_txids: s.mints.iter().map(|t| Txid(*t)).collect(),
        rejected_txids: s.rejected.iter().map(|t| Txid(*t)).collect(),
    })
}

/// Rebuilds the ledger from the store (an empty ledger if nothing was persisted) and checks the
/// rebuilt state's commitment equals the persisted one. The state counts history
/// ([`HistoryMode::Counted`]): the store loads each address's number of entries, not the
/// entries, and serves them.
pub async fn restore_ledger<S: Store>(
    store: &S,
    genesis: Genesis,
) -> Result<LedgerState, StorageError> {
    let Some(snapshot) = store.load().await? else {
        return LedgerState::new_with(genesis, HistoryMode::Counted)
            .map_err(|e| StorageError::Restore(coffer_ledger::RestoreError::Genesis(e)));
    };
    let ledger_snapshot = ledger_snapshot(&snapshot)?;
    let persisted = ledger_snapshot.commitment;
    let state = LedgerState::restore_with(genesis, ledger_snapshot, HistoryMode::Counted)?;
    if Some(state.commitment()) != persisted {
        return Err(StorageError::CommitmentMismatch {
            height: snapshot.height,
        });
    }
    Ok(state)
}

/// A transaction's receipt by txid, decoded.
pub async fn receipt<S: Store>(store: &S, txid: &Txid) -> Result<Option<Receipt>, StorageError> {
    store
        .tx(&txid.0)
        .await?
        .map(|b| decode_receipt(&b))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_round_trip_without_their_seq() {
        let e = HistoryEntry {
            seq: 41,
            height: 7,
            index: 3,
            txid: Txid([9; 32]),
            kind: HistoryKind::Transfer,
            received: Amount(12),
            sent: Amount(30),
        };
        let b = encode_history(&e);
        assert_eq!(b.len(), HISTORY_LEN);
        assert_eq!(decode_history(41, &b).expect("decodes"), e);
        // The seq comes from the store, not the bytes.
        assert_eq!(decode_history(5, &b).expect("decodes").seq, 5);
        assert!(decode_history(41, &b[1..]).is_err());
        let mut bad_kind = b.clone();
        bad_kind[44] = 2;
        assert!(decode_history(41, &bad_kind).is_err());
    }
}
