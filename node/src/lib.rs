//! A Coffer replica: consensus, execution, storage and the REST gateway.

pub mod api;
pub mod storage;
