//! A Coffer replica: consensus, execution, storage and the REST gateway.

pub mod api;
pub mod backend;
pub mod byzantine;
pub mod config;
pub mod consensus;
pub mod executor;
pub mod health;
pub mod instrument;
pub mod keycache;
pub mod ledger;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod origins;
pub mod p2p;
pub mod runtime;
pub mod shutdown;
pub mod sigcache;
pub mod storage;
pub mod testnet;
pub mod tx;
pub mod watchdog;
pub mod witness;
