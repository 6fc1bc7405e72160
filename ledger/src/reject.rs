//! Stable rejection codes: every way a transaction can fail, as a value.
//!
//! The string form (`as_str`, `Display`, serde) and the numeric form (`as_u16`, used in the
//! canonical receipt encoding) are part of the protocol: never renumber or rename, only append.

use crate::encoding::DecodeError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a transaction was rejected. A rejected transaction changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectCode {
    /// Bytes that do not decode canonically (bad tag, truncated, trailing bytes, bad key).
    Malformed = 1,
    /// Encoded size above the genesis `max_tx_bytes`.
    TxTooLarge = 2,
    /// More inputs than the genesis `max_inputs`.
    TooManyInputs = 3,
    /// More outputs than the genesis `max_outputs`.
    TooManyOutputs = 4,
    /// Chain id differs from the genesis chain id.
    WrongChain = 5,
    /// A transfer without inputs.
    NoInputs = 6,
    /// A transaction without outputs.
    NoOutputs = 7,
    /// The same outpoint twice in one transaction.
    DuplicateInput = 8,
    /// An output of amount zero.
    ZeroAmount = 9,
    /// An amount or a sum of amounts above `MAX_SUPPLY`.
    AmountOverflow = 10,
    /// A mint whose key is not a genesis issuer.
    NotAnIssuer = 11,
    /// The signature does not verify.
    BadSignature = 12,
    /// An input that never existed, or that was spent more than the genesis `spent_horizon`
    /// blocks ago (the ledger no longer remembers it).
    UnknownInput = 13,
    /// An input that existed but was already spent: earlier in the same block or within the
    /// last `spent_horizon` blocks.
    InputAlreadySpent = 14,
    /// An input locked to an address other than the signer's.
    NotOwner = 15,
    /// Outputs sum to more than the inputs.
    InsufficientFunds = 16,
    /// Outputs sum to less than the inputs (no fees, no burning: value is conserved exactly).
    ValueNotConserved = 17,
    /// A mint that would take the total supply above the genesis `supply_cap`.
    SupplyCapExceeded = 18,
    /// A mint whose txid was already accepted.
    MintReplayed = 19,
    /// A transaction whose txid a committed block already rejected with `unknown_input`: a
    /// rejection is final, even once its inputs exist.
    AlreadyRejected = 20,
}

impl RejectCode {
    /// Every code, in numeric order.
    pub const ALL: [RejectCode; 20] = [
        RejectCode::Malformed,
        RejectCode::TxTooLarge,
        RejectCode::TooManyInputs,
        RejectCode::TooManyOutputs,
        RejectCode::WrongChain,
        RejectCode::NoInputs,
        RejectCode::NoOutputs,
        RejectCode::DuplicateInput,
        RejectCode::ZeroAmount,
        RejectCode::AmountOverflow,
        RejectCode::NotAnIssuer,
        RejectCode::BadSignature,
        RejectCode::UnknownInput,
        RejectCode::InputAlreadySpent,
        RejectCode::NotOwner,
        RejectCode::InsufficientFunds,
        RejectCode::ValueNotConserved,
        RejectCode::SupplyCapExceeded,
        RejectCode::MintReplayed,
        RejectCode::AlreadyRejected,
    ];

    /// The stable snake_case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::TxTooLarge => "tx_too_large",
            RejectCode::TooManyInputs => "too_many_inputs",
            RejectCode::TooManyOutputs => "too_many_outputs",
            RejectCode::WrongChain => "wrong_chain",
            RejectCode::NoInputs => "no_inputs",
            RejectCode::NoOutputs => "no_outputs",
            RejectCode::DuplicateInput => "duplicate_input",
            RejectCode::ZeroAmount => "zero_amount",
            RejectCode::AmountOverflow => "amount_overflow",
            RejectCode::NotAnIssuer => "not_an_issuer",
            RejectCode::BadSignature => "bad_signature",
            RejectCode::UnknownInput => "unknown_input",
            RejectCode::InputAlreadySpent => "input_already_spent",
            RejectCode::NotOwner => "not_owner",
            RejectCode::InsufficientFunds => "insufficient_funds",
            RejectCode::ValueNotConserved => "value_not_conserved",
            RejectCode::SupplyCapExceeded => "supply_cap_exceeded",
            RejectCode::MintReplayed => "mint_replayed",
            RejectCode::AlreadyRejected => "already_rejected",
        }
    }

    /// The stable number used in canonical encodings.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// Inverse of [`RejectCode::as_u16`].
    pub fn from_u16(v: u16) -> Option<Self> {
        RejectCode::ALL.iter().copied().find(|c| c.as_u16() == v)
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RejectCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RejectCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown reject code {s:?}"))
    }
}

impl From<&DecodeError> for RejectCode {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } => RejectCode::TxTooLarge,
            DecodeError::TooLong { what: "inputs", .. } => RejectCode::TooManyInputs,
            DecodeError::TooLong {
                what: "outputs", ..
            } => RejectCode::TooManyOutputs,
            _ => RejectCode::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        for (i, c) in RejectCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.as_u16()), i + 1);
            assert_eq!(RejectCode::from_u16(c.as_u16()), Some(*c));
            assert_eq!(c.as_str().parse::<RejectCode>(), Ok(*c));
            let json = serde_json::to_string(c).expect("serialise");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(RejectCode::from_u16(0), None);
        assert_eq!(
            RejectCode::InputAlreadySpent.as_str(),
            "input_already_spent"
        );
        // The last code appended; its number and name are protocol.
        assert_eq!(RejectCode::AlreadyRejected.as_u16(), 20);
        assert_eq!(
            "already_rejected".parse::<RejectCode>(),
            Ok(RejectCode::AlreadyRejected)
        );
        assert_eq!(RejectCode::from_u16(21), None);
    }
}
