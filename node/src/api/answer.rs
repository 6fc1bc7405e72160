//! What a replica signs: the statements it makes about its own ledger state, built the same
//! way on every replica so that honest replicas produce byte-identical statements (cursor
//! formats included). The gateway's backend calls these on its own state and asks its peers to
//! do the same at the same height.

use super::backend::BackendError;
use crate::storage::ledger::decode_history;
use crate::storage::{MAX_HISTORY_PAGE, Store};
use coffer_ledger::attest::{
    self, HistoryEntry, ReadQuery, ReadResult, ReadStatement, ReceiptStatement, UtxoEntry,
};
use coffer_ledger::{
    Address, ChainId, Commitment, HistoryWindow, LedgerState, OutPoint, Outcome, Receipt, Txid,
};
use std::str::FromStr as _;

/// The result code of an outcome: `ok` or the reject code.
pub fn outcome_code(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accepted => attest::CODE_OK,
        Outcome::Rejected(code) => code.as_str(),
    }
}

/// The receipt statement a replica signs for `receipt` of a block whose post-state commitment is
/// `commitment`.
pub fn receipt_statement(
    chain_id: &ChainId,
    receipt: &Receipt,
    commitment: &Commitment,
) -> ReceiptStatement {
    ReceiptStatement {
        chain_id: chain_id.as_str().to_owned(),
        txid: receipt.txid.0,
        height: receipt.height,
        code: outcome_code(receipt.outcome).to_owned(),
        commitment: commitment.state_hash.0,
    }
}

/// Cursor of a UTXO page: `<txid hex>:<vout>` of the last outpoint served.
pub fn utxo_cursor(outpoint: &OutPoint) -> String {
    format!("{}:{}", outpoint.txid, outpoint.vout)
}

/// Inverse of [`utxo_cursor`].
pub fn parse_utxo_cursor(cursor: &str) -> Result<OutPoint, BackendError> {
    let bad = || BackendError::Invalid(format!("cursor {cursor:?} is not <txid>:<vout>"));
    let (txid, vout) = cursor.split_once(':').ok_or_else(bad)?;
    let txid = Txid::from_str(txid).map_err(|_| bad())?;
    if vout.is_empty() || !vout.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let vout = vout.parse().map_err(|_| bad())?;
    Ok(OutPoint { txid, vout })
}

fn parse_history_cursor(cursor: &str) -> Result<u64, BackendError> {
    if cursor.is_empty() || cursor.len() > 20 || !cursor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BackendError::Invalid(format!(
            "cursor {cursor:?} is not a sequence number"
        )));
    }
    cursor
        .parse()
        .map_err(|_| BackendError::Invalid(format!("cursor {cursor:?} out of range")))
}

fn parse_address(s: &str) -> Result<Address, BackendError> {
    Address::from_str(s).map_err(|e| BackendError::Invalid(format!("address {s:?}: {e}")))
}

/// How a read is answered at the ledger's current height: from the in-memory state, or (a
/// history page of a ledger that only counts its history) from the store the ledger's changes
/// were persisted to.
#[derive(Debug)]
pub enum Answer {
    /// The result.
    Ready(ReadResult),
    /// The history entries of `address` that [`HistoryWindow`] names, to read with
    /// [`history_from_store`]. History is append-only, so a store at this height or beyond
    /// holds exactly these entries.
    History {
        /// The address.
        address: Address,
        /// The page's sequence numbers and next cursor, at the ledger's height.
        window: HistoryWindow,
    },
}

/// Answers `query` from `ledger` alone; for ledgers that keep their history in memory
/// ([`HistoryMode::Kept`](coffer_ledger::HistoryMode)), such as the test fakes'. A replica's
/// ledger only counts history: it uses [`plan_read`] and [`history_from_store`].
pub fn answer_read(ledger: &LedgerState, query: &ReadQuery) -> Result<ReadResult, BackendError> {
    match plan_read(ledger, query)? {
        Answer::Ready(result) => Ok(result),
        Answer::History { .. } => Err(BackendError::Internal(
            "this ledger keeps no history entries: read them from its store".into(),
        )),
    }
}

fn history_result(entries: Vec<HistoryEntry>, next_cursor: Option<u64>) -> ReadResult {
    ReadResult::History {
        entries,
        next_cursor: next_cursor.map(|c| c.to_string()),
    }
}

fn history_entry(e: &coffer_ledger::HistoryEntry) -> HistoryEntry {
    HistoryEntry {
        seq: e.seq,
        txid: e.txid.0,
        height: e.height,
        index: e.index,
        received: e.received.0,
        sent: e.sent.0,
    }
}

/// Reads the history page `window` of `address` from `store` (see [`Answer::History`]). The
/// store must hold every entry of the window, and exactly those sequence numbers: anything
/// else is reported as an internal error, never served.
pub async fn history_from_store<S: Store>(
    store: &S,
    address: &Address,
    window: HistoryWindow,
) -> Result<ReadResult, BackendError> {
    let internal = |m: String| BackendError::Internal(format!("history of {address}: {m}"));
    let key = address.to_string();
    let mut entries = Vec::new();
    let mut end = window.end;
    // Newest first, in reads of at most the store's page size.
    while end > window.start {
        let want = (end - window.start).min(u64::from(MAX_HISTORY_PAGE));
        // `want` is at most MAX_HISTORY_PAGE, a u32.
        let limit = u32::try_from(want).unwrap_or(MAX_HISTORY_PAGE);
        let items = store
            .history(&key, Some(end - 1), limit)
            .await
            .map_err(|e| internal(e.to_string()))?;
        if items.len() as u64 != want {
            return Err(internal(format!(
                "the store has {} of the {want} entries below seq {end}",
                items.len()
            )));
        }
        for item in items {
            end -= 1;
            if item.seq != end {
                return Err(internal(format!(
                    "the store gave seq {} where {end} was due",
                    item.seq
                )));
            }
            let entry =
                decode_history(item.seq, &item.entry).map_err(|e| internal(e.to_string()))?;
            entries.push(history_entry(&entry));
        }
    }
    Ok(history_result(entries, window.next_cursor))
}

/// Answers `query` from `ledger` at its current height, or says which history entries to read
/// from the store. Pages, of history or of unspent outputs, are capped by the genesis
/// `max_history_page` whatever the request asks (a peer's request is not bounded by the
/// gateway's limits; the cap is the chain's, so every replica answers the same page).
pub fn plan_read(ledger: &LedgerState, query: &ReadQuery) -> Result<Answer, BackendError> {
    Ok(Answer::Ready(match query {
        ReadQuery::Balance { address } => {
            let a = parse_address(address)?;
            let utxo_count = u64::try_from(ledger.utxo_count_of(&a)).unwrap_or(u64::MAX);
            ReadResult::Balance {
                amount: ledger.balance(&a).0,
                utxo_count,
            }
        }
        ReadQuery::Utxos {
            address,
            cursor,
            limit,
        } => {
            let a = parse_address(address)?;
            let after = cursor.as_deref().map(parse_utxo_cursor).transpose()?;
            // u32 -> usize cannot truncate on supported targets.
            let limit = (*limit).min(ledger.genesis().limits.max_history_page) as usize;
            let page = ledger.utxos_page(&a, after, limit);
            let next_cursor = if page.len() == limit {
                page.last().map(|(op, _)| utxo_cursor(op))
            } else {
                None
            };
            let entries = page
                .iter()
                .map(|(op, out)| UtxoEntry {
                    txid: op.txid.0,
                    vout: op.vout,
                    amount: out.amount.0,
                })
                .collect();
            ReadResult::Utxos {
                entries,
                next_cursor,
            }
        }
        ReadQuery::History {
            address,
            cursor,
            limit,
        } => {
            let a = parse_address(address)?;
            let cursor = cursor.as_deref().map(parse_history_cursor).transpose()?;
            // u32 -> usize cannot truncate on supported targets.
            let limit = *limit as usize;
            match ledger.history(&a, cursor, limit) {
                Some(page) => history_result(
                    page.entries.iter().map(history_entry).collect(),
                    page.next_cursor,
                ),
                None => {
                    let window = ledger.history_window(&a, cursor, limit);
                    if window.is_empty() {
                        history_result(Vec::new(), window.next_cursor)
                    } else {
                        return Ok(Answer::History { address: a, window });
                    }
                }
            }
        }
        ReadQuery::Supply => ReadResult::Supply {
            total: ledger.total_supply().0,
        },
        other => {
            return Err(BackendError::Invalid(format!(
                "unsupported query {other:?}"
            )));
        }
    }))
}

/// The read statement a replica signs for `result` of `query` at `commitment`.
pub fn read_statement(
    chain_id: &ChainId,
    commitment: &Commitment,
    query: &ReadQuery,
    result: &ReadResult,
) -> Result<ReadStatement, BackendError> {
    let invalid = |e: attest::AttestError| BackendError::Invalid(e.to_string());
    Ok(ReadStatement {
        chain_id: chain_id.as_str().to_owned(),
        height: commitment.height,
        commitment: commitment.state_hash.0,
        kind: query.kind(),
        query_digest: query.digest().map_err(invalid)?,
        result_digest: result.digest().map_err(invalid)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utxo_cursor_roundtrip_and_rejects() {
        let op = OutPoint {
            txid: Txid([0xab; 32]),
            vout: 7,
        };
        assert_eq!(parse_utxo_cursor(&utxo_cursor(&op)).ok(), Some(op));
        for bad in [
            "",
            "7",
            "ab:7",
            &format!("{}:", "ab".repeat(32)),
            &format!("{}:+1", "ab".repeat(32)),
        ] {
            assert!(parse_utxo_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_cursor_is_digits() {
        assert_eq!(parse_history_cursor("12").ok(), Some(12));
        for bad in ["", "-1", "1e2", "99999999999999999999999"] {
            assert!(parse_history_cursor(bad).is_err(), "{bad}");
        }
    }
}
