//! Gathering signed statements from peers: the replica that received a request collects its
//! own and its peers' signatures and keeps only valid ones from distinct genesis replicas;
//! the witness (`crate::witness`) decides when f+1 or 2f+1 matching ones are enough.

use coffer_ledger::attest::{ReplicaSet, Signed, Statement};
use std::collections::BTreeMap;

/// Valid signatures from distinct replicas, at most one per replica (so at most n).
#[derive(Clone, Debug)]
pub struct Gathered<S> {
    replicas: ReplicaSet,
    chain_id: String,
    by_replica: BTreeMap<[u8; 32], Signed<S>>,
}

/// Why a statement was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// Not a genesis replica.
    UnknownReplica,
    /// About another chain.
    WrongChain,
    /// The signature does not verify.
    BadSignature,
    /// This replica already gave one.
    Duplicate,
}

impl<S: Statement> Gathered<S> {
    /// Nothing gathered yet.
    pub fn new(replicas: ReplicaSet, chain_id: impl Into<String>) -> Self {
        Gathered {
            replicas,
            chain_id: chain_id.into(),
            by_replica: BTreeMap::new(),
        }
    }

    /// Keeps `signed` if it is valid and its replica has not answered yet.
    pub fn add(&mut self, signed: Signed<S>) -> Result<(), Refused> {
        self.check_signer(&signed)?;
        self.replicas
            .verify(&signed)
            .map_err(|_| Refused::BadSignature)?;
        self.by_replica.insert(signed.attestation.replica, signed);
        Ok(())
    }

    /// [`add`](Self::add) for a statement whose signature the caller already verified.
    pub fn add_verified(&mut self, signed: Signed<S>) -> Result<(), Refused> {
        self.check_signer(&signed)?;
        self.by_replica.insert(signed.attestation.replica, signed);
        Ok(())
    }

    /// Everything [`add`](Self::add) checks but the signature: a genesis replica, this chain,
    /// and the replica's first answer.
    fn check_signer(&self, signed: &Signed<S>) -> Result<(), Refused> {
        let replica = &signed.attestation.replica;
        if !self.replicas.contains(replica) {
            return Err(Refused::UnknownReplica);
        }
        if signed.statement.chain_id() != self.chain_id {
            return Err(Refused::WrongChain);
        }
        if self.by_replica.contains_key(replica) {
            return Err(Refused::Duplicate);
        }
        Ok(())
    }

    /// Size of the largest group of replicas that signed byte-identical statements.
    pub fn matching(&self) -> usize {
        let mut groups: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for signed in self.by_replica.values() {
            // Kept statements verified, so they encode.
            if let Ok(bytes) = signed.statement.encode() {
                *groups.entry(bytes).or_default() += 1;
            }
        }
        groups.values().copied().max().unwrap_or(0)
    }

    /// Whether f+1 match.
    pub fn weak(&self) -> bool {
        self.matching() >= self.replicas.weak_quorum()
    }

    /// Whether 2f+1 match.
    pub fn strong(&self) -> bool {
        self.matching() >= self.replicas.strong_quorum()
    }

    /// Number of replicas heard from.
    pub fn len(&self) -> usize {
        self.by_replica.len()
    }

    /// Whether nothing was kept.
    pub fn is_empty(&self) -> bool {
        self.by_replica.is_empty()
    }

    /// Everything kept, in replica key order: what the gateway returns (the client verifies).
    pub fn into_vec(self) -> Vec<Signed<S>> {
        self.by_replica.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_ledger::attest::{ReceiptStatement, sign};
    use ed25519_dalek::SigningKey;

    fn keys() -> Vec<SigningKey> {
        (1..=4u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect()
    }

    fn set() -> ReplicaSet {
        ReplicaSet::new(keys().iter().map(|k| k.verifying_key().to_bytes())).expect("set")
    }

    fn statement(code: &str) -> ReceiptStatement {
        ReceiptStatement {
            chain_id: "coffer-test".into(),
            txid: [1; 32],
            height: 3,
            code: code.into(),
            commitment: [2; 32],
        }
    }

    #[test]
    fn add_filters_and_counts() {
        let k = keys();
        let mut g = Gathered::new(set(), "coffer-test");
        assert_eq!(g.add(sign(statement("ok"), &k[0]).expect("sign")), Ok(()));
        assert_eq!(
            g.add(sign(statement("ok"), &k[0]).expect("sign")),
            Err(Refused::Duplicate)
        );
        let stranger = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            g.add(sign(statement("ok"), &stranger).expect("sign")),
            Err(Refused::UnknownReplica)
        );
        let mut forged = sign(statement("ok"), &k[1]).expect("sign");
        forged.statement.height = 4;
        assert_eq!(g.add(forged), Err(Refused::BadSignature));
        let mut other = statement("ok");
        other.chain_id = "coffer-main".into();
        assert_eq!(
            g.add(sign(other, &k[1]).expect("sign")),
            Err(Refused::WrongChain)
        );
        assert!(!g.weak());
        assert_eq!(
            g.add(sign(statement("insufficient_funds"), &k[2]).expect("sign")),
            Ok(())
        );
        assert_eq!(g.matching(), 1, "two different statements do not match");
        assert_eq!(g.add(sign(statement("ok"), &k[3]).expect("sign")), Ok(()));
        assert!(g.weak() && !g.strong());
        assert_eq!(g.len(), 3);
    }
}
