//! What a replica signs: the statements it makes about its own ledger state, built the same
//! way on every replica so that honest replicas produce byte-identical statements (cursor
//! formats included). The gateway's backend calls these on its own state and asks its peers to
//! do the same at the same height.

use super::backend::BackendError;
use coffer_ledger::attest::{
    self, HistoryEntry, ReadQuery, ReadResult, ReadStatement, ReceiptStatement, UtxoEntry,
};
use coffer_ledger::{Address, ChainId, Commitment, LedgerState, OutPoint, Outcome, Receipt, Txid};
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

/// Answers `query` from `ledger` at its current height. Page sizes are the caller's (the
/// gateway bounds them); history pages are further capped by the genesis `max_history_page`.
pub fn answer_read(ledger: &LedgerState, query: &ReadQuery) -> Result<ReadResult, BackendError> {
    Ok(match query {
        ReadQuery::Balance { address } => {
            let a = parse_address(address)?;
            // The address index has no count of its own; an address's outputs are few next to
            // the page limits, and this is a read of in-memory state.
            let utxo_count = u64::try_from(ledger.utxos(&a).len()).unwrap_or(u64::MAX);
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
            let limit = *limit as usize;
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
            let page = ledger.history(&a, cursor, *limit as usize);
            let entries = page
                .entries
                .iter()
                .map(|e| HistoryEntry {
                    seq: e.seq,
                    txid: e.txid.0,
                    height: e.height,
                    index: e.index,
                    received: e.received.0,
                    sent: e.sent.0,
                })
                .collect();
            ReadResult::History {
                entries,
                next_cursor: page.next_cursor.map(|c| c.to_string()),
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
    })
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
