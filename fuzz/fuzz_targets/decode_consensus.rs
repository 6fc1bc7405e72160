//! Fuzz the decoders of what replicas send each other over consensus channels: the block codec
//! (the node's own `consensus/block.rs`, compiled in), simplex votes and certificates with the
//! node's ed25519 scheme, and mempool gossip batches. Never panic; whatever decodes re-encodes
//! to the same bytes. The first input byte picks the decoder.
#![no_main]

/// The node's `tx` module, reduced to what `block.rs` uses (value: `coffer_node::tx`).
mod tx {
    pub const MAX_TX_BYTES: usize = 32 * 1024;
}

#[allow(dead_code)]
#[path = "../../node/src/consensus/block.rs"]
mod block;

use bytes::Bytes;
use commonware_codec::{Decode, DecodeExt, Encode, RangeCfg};
use commonware_consensus::simplex::types::{Certificate, Vote};
use commonware_cryptography::{Signer, certificate::Verifier as _, ed25519::PrivateKey};
use commonware_utils::ordered::Set;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;
type Digest = commonware_cryptography::sha256::Digest;

fn scheme() -> &'static Scheme {
    static S: OnceLock<Scheme> = OnceLock::new();
    S.get_or_init(|| {
        let keys: Vec<PrivateKey> = (0..4).map(PrivateKey::from_seed).collect();
        let participants = Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>())
            .expect("distinct keys");
        Scheme::signer(b"coffer/fuzz/consensus", participants, keys[0].clone()).expect("signer")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let bytes = Bytes::copy_from_slice(rest);
    match selector % 4 {
        0 => {
            if let Ok(b) = block::Block::decode(bytes.clone()) {
                assert_eq!(b.encode(), bytes, "non-canonical block");
            }
        }
        1 => {
            if let Ok(v) = Vote::<Scheme, Digest>::decode(bytes.clone()) {
                assert_eq!(v.encode(), bytes, "non-canonical vote");
            }
        }
        2 => {
            let cfg = scheme().certificate_codec_config();
            if let Ok(c) = Certificate::<Scheme, Digest>::decode_cfg(bytes.clone(), &cfg) {
                assert_eq!(c.encode(), bytes, "non-canonical certificate");
            }
        }
        _ => {
            let cfg = (RangeCfg::new(1..=256usize), RangeCfg::new(1..=tx::MAX_TX_BYTES));
            if let Ok(batch) = Vec::<Bytes>::decode_cfg(bytes.clone(), &cfg) {
                assert_eq!(batch.encode(), bytes, "non-canonical gossip batch");
            }
        }
    }
});
