//! Money: an integer count of base units with checked arithmetic and a hard supply ceiling.
//!
//! There are no floats anywhere near money. Every sum that can grow is computed with
//! `checked_add`, and any amount above [`MAX_SUPPLY`] is invalid on the ledger.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Base units in one coin (display only; the ledger never divides).
pub const UNITS_PER_COIN: u64 = 100_000_000;

/// Absolute ceiling on the total amount of money that can ever exist, in base units.
///
/// 21 million coins of 10^8 units: 2.1e15, which stays below 2^53 so that JSON consumers that
/// parse integers as IEEE doubles (JavaScript) still read every amount exactly. A genesis
/// `supply_cap` may be lower, never higher.
pub const MAX_SUPPLY: Amount = Amount(21_000_000 * UNITS_PER_COIN);

/// An amount of money in base units.
///
/// JSON form: a bare integer (`42`), never a string or a float.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// No money.
    pub const ZERO: Amount = Amount(0);

    /// The number of base units.
    pub const fn to_units(self) -> u64 {
        self.0
    }

    /// `self + rhs`, or `None` on `u64` overflow.
    #[must_use]
    pub const fn checked_add(self, rhs: Amount) -> Option<Amount> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Some(Amount(v)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if `rhs > self`.
    #[must_use]
    pub const fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Amount(v)),
            None => None,
        }
    }

    /// True when the amount is at most [`MAX_SUPPLY`].
    pub const fn is_valid(self) -> bool {
        self.0 <= MAX_SUPPLY.0
    }

    /// Sum of amounts that fails if any partial sum overflows `u64` or exceeds [`MAX_SUPPLY`].
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(iter: I) -> Option<Amount> {
        let mut total = Amount::ZERO;
        for a in iter {
            total = total.checked_add(a)?;
            if !total.is_valid() {
                return None;
            }
        }
        Some(total)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1).checked_sub(Amount(2)), None);
        assert_eq!(Amount(5).checked_sub(Amount(2)), Some(Amount(3)));
        assert_eq!(Amount(5).checked_add(Amount(2)), Some(Amount(7)));
    }

    #[test]
    fn checked_sum_enforces_the_supply_ceiling() {
        assert_eq!(Amount::checked_sum([MAX_SUPPLY]), Some(MAX_SUPPLY));
        assert_eq!(Amount::checked_sum([MAX_SUPPLY, Amount(1)]), None);
        assert_eq!(Amount::checked_sum([Amount(u64::MAX), Amount(1)]), None);
        assert_eq!(Amount::checked_sum([]), Some(Amount::ZERO));
    }

    #[test]
    fn json_is_a_bare_integer() {
        assert_eq!(
            serde_json::to_string(&Amount(42)).ok().as_deref(),
            Some("42")
        );
        assert!(serde_json::from_str::<Amount>("\"42\"").is_err());
        assert!(serde_json::from_str::<Amount>("4.2").is_err());
        assert!(serde_json::from_str::<Amount>("-1").is_err());
    }
}
