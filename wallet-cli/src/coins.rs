//! Coin selection: which unspent outputs pay for a transfer, and the change. Pure and
//! deterministic, so that building a transaction twice from the same UTXOs gives the same txid
//! (resubmitting after a timeout is then a replay, never a second payment).

use coffer_ledger::{Amount, OutPoint};

/// Why no selection exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// Asked to pay zero.
    #[error("amount must be above 0")]
    ZeroAmount,
    /// The outputs do not add up to the amount.
    #[error("insufficient funds: have {have}, need {need}")]
    InsufficientFunds {
        /// Sum of every spendable output.
        have: Amount,
        /// The amount asked for.
        need: Amount,
    },
    /// Paying needs more inputs than one transaction may hold.
    #[error("paying {need} needs more than {max_inputs} inputs; send a smaller amount first")]
    TooManyInputs {
        /// The amount asked for.
        need: Amount,
        /// The limit.
        max_inputs: usize,
    },
}

impl SelectError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            SelectError::ZeroAmount => "zero_amount",
            SelectError::InsufficientFunds { .. } => "insufficient_funds",
            SelectError::TooManyInputs { .. } => "too_many_inputs",
        }
    }
}

/// The chosen inputs and the change to pay back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Outputs to spend, in the order they go into the transaction.
    pub inputs: Vec<OutPoint>,
    /// Their sum.
    pub total: Amount,
    /// `total - amount`, paid back to the sender when above 0.
    pub change: Amount,
}

/// Picks inputs for `amount` from `utxos`: a single output of exactly the amount if there is
/// one (no change output), else largest first until the amount is covered (fewest inputs).
/// Ties are broken by outpoint so the result does not depend on the order given.
pub fn select(
    utxos: &[(OutPoint, Amount)],
    amount: Amount,
    max_inputs: usize,
) -> Result<Selection, SelectError> {
    if amount == Amount::ZERO {
        return Err(SelectError::ZeroAmount);
    }
    let mut sorted: Vec<(OutPoint, Amount)> = utxos.to_vec();
    sorted.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.txid.0.cmp(&b.0.txid.0))
            .then_with(|| a.0.vout.cmp(&b.0.vout))
    });
    sorted.dedup_by(|a, b| a.0 == b.0);
    // Not enough money at all is the error to report, whatever the input limit.
    let have = sorted.iter().fold(Amount::ZERO, |sum, (_, v)| {
        sum.checked_add(*v).unwrap_or(Amount(u64::MAX))
    });
    if have < amount {
        return Err(SelectError::InsufficientFunds { have, need: amount });
    }
    if let Some((op, v)) = sorted.iter().rev().find(|(_, v)| *v == amount) {
        return Ok(Selection {
            inputs: vec![*op],
            total: *v,
            change: Amount::ZERO,
        });
    }
    let mut inputs = Vec::new();
    let mut total = Amount::ZERO;
    for (op, v) in &sorted {
        if total >= amount {
            break;
        }
        if inputs.len() == max_inputs {
            return Err(SelectError::TooManyInputs {
                need: amount,
                max_inputs,
            });
        }
        // Sums of real outputs stay under the supply cap; saturate rather than trust that.
        total = total.checked_add(*v).unwrap_or(Amount(u64::MAX));
        inputs.push(*op);
    }
    if total < amount {
        return Err(SelectError::InsufficientFunds {
            have: total,
            need: amount,
        });
    }
    let change = total.checked_sub(amount).unwrap_or(Amount::ZERO);
    Ok(Selection {
        inputs,
        total,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_ledger::Txid;

    fn op(n: u8) -> OutPoint {
        OutPoint {
            txid: Txid([n; 32]),
            vout: u32::from(n),
        }
    }

    #[test]
    fn exact_match_needs_no_change() {
        let utxos = [
            (op(1), Amount(50)),
            (op(2), Amount(30)),
            (op(3), Amount(70)),
        ];
        let s = select(&utxos, Amount(30), 10).expect("selection");
        assert_eq!((s.inputs, s.change), (vec![op(2)], Amount::ZERO));
    }

    #[test]
    fn largest_first_with_change() {
        let utxos = [
            (op(1), Amount(50)),
            (op(2), Amount(30)),
            (op(3), Amount(70)),
        ];
        let s = select(&utxos, Amount(100), 10).expect("selection");
        assert_eq!(s.inputs, vec![op(3), op(1)]);
        assert_eq!((s.total, s.change), (Amount(120), Amount(20)));
        // Same set in another order, same choice.
        let mut reversed = utxos;
        reversed.reverse();
        assert_eq!(select(&reversed, Amount(100), 10), Ok(s));
    }

    #[test]
    fn insufficient_zero_and_too_many_inputs() {
        let utxos = [(op(1), Amount(5)), (op(2), Amount(5)), (op(3), Amount(5))];
        assert_eq!(
            select(&utxos, Amount(16), 10),
            Err(SelectError::InsufficientFunds {
                have: Amount(15),
                need: Amount(16)
            })
        );
        assert_eq!(select(&utxos, Amount(0), 10), Err(SelectError::ZeroAmount));
        assert_eq!(
            select(&utxos, Amount(12), 2),
            Err(SelectError::TooManyInputs {
                need: Amount(12),
                max_inputs: 2
            })
        );
        assert_eq!(
            select(&utxos, Amount(10), 2).map(|s| s.change),
            Ok(Amount(0))
        );
        assert!(select(&[], Amount(1), 2).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the outputs and the amount: the inputs are distinct outputs of the set,
        /// cover the amount, respect the limit, and the change is exactly the surplus; a
        /// failure is only claimed when it is true.
        #[test]
        fn selection_is_sound(
            amounts in proptest::collection::vec(1u64..1_000_000, 0..40),
            amount in 1u64..5_000_000,
            max_inputs in 1usize..50,
        ) {
            let utxos: Vec<(OutPoint, Amount)> = amounts
                .iter()
                .enumerate()
                .map(|(i, a)| (OutPoint { txid: Txid([u8::try_from(i % 256).unwrap_or(0); 32]), vout: u32::try_from(i).unwrap_or(0) }, Amount(*a)))
                .collect();
            let have: u64 = amounts.iter().sum();
            match select(&utxos, Amount(amount), max_inputs) {
                Ok(s) => {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut total = 0u64;
                    for op in &s.inputs {
                        proptest::prop_assert!(seen.insert(*op), "duplicate input");
                        let (_, v) = utxos.iter().find(|(o, _)| o == op).expect("input from the set");
                        total += v.0;
                    }
                    proptest::prop_assert!(s.inputs.len() <= max_inputs);
                    proptest::prop_assert_eq!(Amount(total), s.total);
                    proptest::prop_assert!(total >= amount);
                    proptest::prop_assert_eq!(s.change, Amount(total - amount));
                }
                Err(SelectError::InsufficientFunds { have: h, need }) => {
                    proptest::prop_assert!(have < amount);
                    proptest::prop_assert_eq!((h, need), (Amount(have), Amount(amount)));
                }
                Err(SelectError::TooManyInputs { .. }) => {
                    // Even the largest max_inputs outputs do not cover the amount.
                    let mut sorted = amounts.clone();
                    sorted.sort_unstable_by(|a, b| b.cmp(a));
                    let best: u64 = sorted.iter().take(max_inputs).sum();
                    proptest::prop_assert!(best < amount && have >= amount);
                }
                Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
