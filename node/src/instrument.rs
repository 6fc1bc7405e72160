//! The state machine as a replica process runs it: every persist is timed and its outcome
//! recorded in the [`NodeMetrics`] (store latency, failures, health), and blocks pass a
//! [`BlockGate`] so that a graceful shutdown stops between two blocks, never inside one.

use crate::metrics::NodeMetrics;
use crate::shutdown::BlockGate;
use crate::tx::{PersistError, Receipt, StateMachine};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// Wraps a [`StateMachine`] with metrics and the shutdown gate.
pub struct Instrumented<M> {
    inner: M,
    metrics: Arc<NodeMetrics>,
    gate: Arc<BlockGate>,
}

impl<M: StateMachine> Instrumented<M> {
    /// `inner`, reporting to `metrics` and admitting blocks through `gate`.
    pub fn new(inner: M, metrics: Arc<NodeMetrics>, gate: Arc<BlockGate>) -> Self {
        Self {
            inner,
            metrics,
            gate,
        }
    }

    /// The wrapped machine.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

impl<M: StateMachine> StateMachine for Instrumented<M> {
    fn applied_height(&self) -> u64 {
        self.inner.applied_height()
    }

    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt> {
        self.inner.apply_block(height, txs)
    }

    async fn ready(&mut self) {
        self.inner.ready().await;
        self.gate.enter().await;
    }

    async fn persist(&mut self) -> Result<(), PersistError> {
        self.metrics.persist_started();
        let started = Instant::now();
        let result = self.inner.persist().await;
        self.metrics
            .persist_finished(started.elapsed(), result.is_ok());
        if result.is_ok() {
            self.gate.leave();
        }
        result
    }

    fn commitment(&self) -> [u8; 32] {
        self.inner.commitment()
    }

    fn commitment_encoding(&self) -> Vec<u8> {
        self.inner.commitment_encoding()
    }
}
