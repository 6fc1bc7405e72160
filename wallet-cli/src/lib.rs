//! Coffer client library: keys, coin selection and quorum-verified requests.
