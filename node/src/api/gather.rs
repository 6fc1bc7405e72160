//! Gathering signed statements from peers: the replica that received a request collects its
//! own and its peers' signatures, keeps only valid ones from distinct genesis replicas, and
//! answers once 2f+1 match, or f+1 once the patience for more has run out.

use super::backend::BackendError;
use coffer_ledger::attest::{ReplicaSet, Signed, Statement};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

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

    /// Receives from `peers` until 2f+1 match or `patience` has passed; then settles for f+1,
    /// waiting for them at most until `deadline`. Invalid and repeated answers are dropped.
    /// `Timeout` if f+1 matching never arrived (or the peers' channel closed first).
    pub async fn collect(
        &mut self,
        peers: &mut mpsc::Receiver<Signed<S>>,
        patience: Duration,
        deadline: Duration,
    ) -> Result<(), BackendError> {
        let start = Instant::now();
        let (patience_at, deadline_at) = (start + patience, start + deadline.max(patience));
        loop {
            if self.strong() || (self.weak() && Instant::now() >= patience_at) {
                return Ok(());
            }
            let wake = if self.weak() {
                patience_at
            } else {
                deadline_at
            };
            match tokio::time::timeout_at(wake, peers.recv()).await {
                Ok(Some(signed)) => {
                    let _ = self.add(signed);
                }
                Ok(None) => break,
                Err(_) if self.weak() => return Ok(()),
                Err(_) => break,
            }
        }
        if self.weak() {
            Ok(())
        } else {
            Err(BackendError::Timeout(format!(
                "{} of {} matching signatures after {} ms",
                self.matching(),
                self.replicas.weak_quorum(),
                start.elapsed().as_millis()
            )))
        }
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

    #[tokio::test(start_paused = true)]
    async fn returns_at_once_on_strong_quorum() {
        let k = keys();
        let mut g = Gathered::new(set(), "coffer-test");
        g.add(sign(statement("ok"), &k[0]).expect("sign"))
            .expect("own");
        let (tx, mut rx) = mpsc::channel(8);
        for key in &k[1..3] {
            tx.send(sign(statement("ok"), key).expect("sign"))
                .await
                .expect("send");
        }
        let started = Instant::now();
        g.collect(&mut rx, Duration::from_secs(1), Duration::from_secs(5))
            .await
            .expect("2f+1");
        assert!(g.strong());
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn settles_for_weak_quorum_after_patience() {
        let k = keys();
        let mut g = Gathered::new(set(), "coffer-test");
        g.add(sign(statement("ok"), &k[0]).expect("sign"))
            .expect("own");
        let (tx, mut rx) = mpsc::channel(8);
        tx.send(sign(statement("ok"), &k[1]).expect("sign"))
            .await
            .expect("send");
        let started = Instant::now();
        g.collect(&mut rx, Duration::from_secs(1), Duration::from_secs(5))
            .await
            .expect("f+1");
        assert!(g.weak() && !g.strong());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_without_weak_quorum() {
        let k = keys();
        let mut g: Gathered<ReceiptStatement> = Gathered::new(set(), "coffer-test");
        g.add(sign(statement("ok"), &k[0]).expect("sign"))
            .expect("own");
        let (tx, mut rx) = mpsc::channel(8);
        // A lone dissenter does not make a quorum.
        tx.send(sign(statement("bad_signature"), &k[1]).expect("sign"))
            .await
            .expect("send");
        let started = Instant::now();
        let err = g
            .collect(&mut rx, Duration::from_secs(1), Duration::from_secs(5))
            .await;
        assert!(matches!(err, Err(BackendError::Timeout(_))), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(tx);
    }
}
