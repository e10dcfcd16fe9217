//! Fee policy: the caps of a first transaction, the caps of its replacements, and the
//! configured ceilings that bound both. Pure functions of the market and the previous caps.

use serde::{Deserialize, Serialize};

use crate::config::Wei;

/// Gas one blob consumes (EIP-4844 `GAS_PER_BLOB`).
pub(crate) const GAS_PER_BLOB: u64 = 1 << 17;

/// A transaction's fee caps, per gas and per blob gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fees {
    /// `max_priority_fee_per_gas`.
    pub tip: u128,
    /// `max_fee_per_gas`.
    pub max_fee: u128,
    /// `max_fee_per_blob_gas`, for a blob transaction.
    pub blob_fee: Option<u128>,
}

impl Fees {
    /// The most this transaction can cost: every unit of gas and blob gas at its cap.
    pub(crate) fn worst_case(&self, gas: u64, blobs: usize) -> u128 {
        let blob_gas = u128::from(GAS_PER_BLOB) * blobs as u128;
        self.max_fee.saturating_mul(u128::from(gas)).saturating_add(self.blob_fee.unwrap_or(0).saturating_mul(blob_gas))
    }
}

/// What the node says fees are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Market {
    /// Base fee of the latest block.
    pub base_fee: u128,
    /// The node's suggested tip.
    pub tip: u128,
    /// Blob base fee, when the transaction carries blobs.
    pub blob_base_fee: Option<u128>,
}

/// The configured ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ceilings {
    pub max_fee: Wei,
    pub tip: Wei,
    pub blob_fee: Wei,
}

/// Why no transaction can be priced within the ceilings right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AboveCeiling(pub String);

/// Caps that get a transaction included now: twice the base fee (room for six full blocks
/// of rising fees) plus the tip, twice the blob base fee; each at most its ceiling, and
/// refused when even the ceiling cannot pay the current base fee.
pub(crate) fn initial(m: Market, c: Ceilings) -> Result<Fees, AboveCeiling> {
    let tip = m.tip.clamp(1, c.tip.0);
    if m.base_fee.saturating_add(tip) > c.max_fee.0 {
        return Err(AboveCeiling(format!(
            "the base fee is {} and the tip {}, above settlement.max_fee_per_gas {}",
            Wei(m.base_fee),
            Wei(tip),
            c.max_fee
        )));
    }
    let max_fee = m.base_fee.saturating_mul(2).saturating_add(tip).min(c.max_fee.0);
    let blob_fee = match m.blob_base_fee {
        None => None,
        Some(b) if b > c.blob_fee.0 => {
            return Err(AboveCeiling(format!(
                "the blob base fee is {}, above settlement.max_fee_per_blob_gas {}",
                Wei(b),
                c.blob_fee
            )))
        }
        Some(b) => Some(b.saturating_mul(2).max(1).min(c.blob_fee.0)),
    };
    Ok(Fees { tip, max_fee, blob_fee })
}

/// The least a replacement must offer over `prev`: a blob transaction doubles every cap (the
/// blob pool's rule), another adds 12.5 % (over the usual 10 %), each at least one wei more.
fn minimum_bump(prev: u128, blob: bool) -> u128 {
    let bumped = if blob { prev.saturating_mul(2) } else { prev.saturating_add(prev.div_ceil(8)) };
    bumped.max(prev.saturating_add(1))
}

/// The caps of a replacement for a transaction priced `prev`: at least the minimum bump of
/// each cap and at least what the market asks now. Refused when a cap would pass its ceiling,
/// since a replacement below the minimum bump would be refused by the pool anyway.
pub(crate) fn bump(prev: Fees, m: Market, c: Ceilings) -> Result<Fees, AboveCeiling> {
    let blob = prev.blob_fee.is_some();
    let want_tip = m.tip.clamp(1, c.tip.0);
    let tip = minimum_bump(prev.tip, blob).max(want_tip);
    let max_fee = minimum_bump(prev.max_fee, blob).max(m.base_fee.saturating_mul(2).saturating_add(tip));
    let over = |key: &str, v: u128, ceiling: Wei| {
        AboveCeiling(format!("a replacement needs {key} {}, above its ceiling settlement.{key} {ceiling}", Wei(v)))
    };
    if tip > c.tip.0 {
        return Err(over("max_priority_fee_per_gas", tip, c.tip));
    }
    if max_fee > c.max_fee.0 {
        // The market part may be capped; the pool's minimum may not.
        let floor = minimum_bump(prev.max_fee, blob).max(m.base_fee.saturating_add(tip));
        if floor > c.max_fee.0 {
            return Err(over("max_fee_per_gas", floor, c.max_fee));
        }
    }
    let max_fee = max_fee.min(c.max_fee.0);
    let blob_fee = match prev.blob_fee {
        None => None,
        Some(b) => {
            let want = minimum_bump(b, true).max(m.blob_base_fee.unwrap_or(0).saturating_mul(2));
            let floor = minimum_bump(b, true).max(m.blob_base_fee.unwrap_or(0));
            if floor > c.blob_fee.0 {
                return Err(over("max_fee_per_blob_gas", floor, c.blob_fee));
            }
            Some(want.min(c.blob_fee.0))
        }
    };
    Ok(Fees { tip, max_fee, blob_fee })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;

    fn ceilings() -> Ceilings {
        Ceilings { max_fee: Wei::gwei(500), tip: Wei::gwei(20), blob_fee: Wei::gwei(200) }
    }

    fn market(base: u128, blob: Option<u128>) -> Market {
        Market { base_fee: base * GWEI, tip: GWEI, blob_base_fee: blob.map(|b| b * GWEI) }
    }

    #[test]
    fn first_caps_follow_the_market_within_the_ceilings() {
        let f = initial(market(10, Some(3)), ceilings()).unwrap();
        assert_eq!(f, Fees { tip: GWEI, max_fee: 21 * GWEI, blob_fee: Some(6 * GWEI) });
        // Twice the base fee would pass the ceiling: capped, since the ceiling still pays it.
        let f = initial(market(300, None), ceilings()).unwrap();
        assert_eq!(f.max_fee, 500 * GWEI);
        // A base fee above the ceiling: no transaction.
        let e = initial(market(600, None), ceilings()).unwrap_err();
        assert!(e.0.contains("max_fee_per_gas"), "{e:?}");
        let e = initial(market(10, Some(300)), ceilings()).unwrap_err();
        assert!(e.0.contains("max_fee_per_blob_gas"), "{e:?}");
        // A zero tip suggestion still tips one wei.
        let f = initial(Market { tip: 0, ..market(10, None) }, ceilings()).unwrap();
        assert_eq!(f.tip, 1);
    }

    #[test]
    fn a_blob_replacement_doubles_every_cap_and_others_add_an_eighth() {
        let prev = Fees { tip: GWEI, max_fee: 21 * GWEI, blob_fee: Some(6 * GWEI) };
        let f = bump(prev, market(10, Some(3)), ceilings()).unwrap();
        assert_eq!(f, Fees { tip: 2 * GWEI, max_fee: 42 * GWEI, blob_fee: Some(12 * GWEI) });
        let prev = Fees { tip: 8 * GWEI, max_fee: 40 * GWEI, blob_fee: None };
        let f = bump(prev, market(10, None), ceilings()).unwrap();
        assert_eq!(f, Fees { tip: 9 * GWEI, max_fee: 45 * GWEI, blob_fee: None });
        assert!(f.max_fee * 10 >= prev.max_fee * 11 && f.tip * 10 >= prev.tip * 11);
    }

    #[test]
    fn a_replacement_meets_a_spiking_market() {
        let prev = Fees { tip: GWEI, max_fee: 21 * GWEI, blob_fee: Some(6 * GWEI) };
        let f = bump(prev, market(100, Some(50)), ceilings()).unwrap();
        assert_eq!(f, Fees { tip: 2 * GWEI, max_fee: 200 * GWEI + 2 * GWEI, blob_fee: Some(100 * GWEI) });
    }

    #[test]
    fn a_replacement_past_a_ceiling_is_refused_naming_it() {
        let prev = Fees { tip: GWEI, max_fee: 300 * GWEI, blob_fee: Some(6 * GWEI) };
        let e = bump(prev, market(10, Some(3)), ceilings()).unwrap_err();
        assert!(e.0.contains("settlement.max_fee_per_gas"), "{e:?}");
        let prev = Fees { tip: GWEI, max_fee: 21 * GWEI, blob_fee: Some(150 * GWEI) };
        let e = bump(prev, market(10, Some(3)), ceilings()).unwrap_err();
        assert!(e.0.contains("max_fee_per_blob_gas"), "{e:?}");
        let prev = Fees { tip: 15 * GWEI, max_fee: 21 * GWEI, blob_fee: Some(GWEI) };
        assert!(bump(prev, market(1, Some(1)), ceilings()).unwrap_err().0.contains("max_priority_fee_per_gas"));
        // The market part is capped when the pool's minimum still fits.
        let prev = Fees { tip: GWEI, max_fee: 220 * GWEI, blob_fee: None };
        let f = bump(prev, market(250, None), ceilings()).unwrap();
        assert_eq!(f.max_fee, 500 * GWEI);
    }

    #[test]
    fn worst_case_counts_gas_and_blob_gas() {
        let f = Fees { tip: 1, max_fee: 10, blob_fee: Some(3) };
        assert_eq!(f.worst_case(100, 2), 10 * 100 + 3 * 2 * 131_072);
        assert_eq!(Fees { blob_fee: None, ..f }.worst_case(100, 0), 1000);
    }
}
