//! Wallet keys, BIP340 Schnorr signatures and bech32m addresses.
//!
//! A wallet is a secp256k1 key pair. Its [`PublicKey`] is the 32-byte x-only key of BIP340; its
//! [`Address`] is `bech32m("coffer", tagged_hash("coffer/address", x_only_key))`.

use crate::hash::{HexError, parse_hex, tagged_hash, tags};
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

/// Signatures made with one signing context before it is re-randomized.
///
/// libsecp256k1 blinds its secret-key arithmetic with the context's random state. The context
/// is randomized when created and again after this many signatures, as defence in depth
/// against side channels. Bitcoin Core randomizes its context once, at start-up. Re-randomizing
/// costs about one signature, so doing it after every signature (as `secp256k1::schnorr::sign`
/// of 0.33 does) more than doubles the cost of signing.
pub const RERANDOMIZE_EVERY: u32 = 64;

/// This thread's signing context, and how many signatures it made since its last
/// randomization.
struct Signer {
    ctx: secp256k1::Secp256k1<secp256k1::SignOnly>,
    uses: u32,
}

thread_local! {
    static SIGNER: RefCell<Signer> = RefCell::new(Signer {
        // `gen_new` randomizes the context from the operating system's randomness.
        ctx: secp256k1::Secp256k1::signing_only(),
        uses: 0,
    });
    static VERIFIER: secp256k1::Secp256k1<secp256k1::VerifyOnly> =
        secp256k1::Secp256k1::verification_only();
}

/// Runs `f` with this thread's signing context, re-randomizing it every
/// [`RERANDOMIZE_EVERY`] uses.
fn with_signer<T>(f: impl FnOnce(&secp256k1::Secp256k1<secp256k1::SignOnly>) -> T) -> T {
    SIGNER.with(|signer| {
        let mut signer = signer.borrow_mut();
        if signer.uses >= RERANDOMIZE_EVERY {
            signer.ctx.randomize(&mut secp256k1::rand::rng());
            signer.uses = 0;
        }
        signer.uses += 1;
        f(&signer.ctx)
    })
}

/// Human-readable part of every Coffer address.
pub const ADDRESS_HRP: &str = "coffer";

/// Errors parsing keys, signatures and addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Bad hex.
    #[error(transparent)]
    Hex(#[from] HexError),
    /// 32 bytes that are not the x coordinate of a curve point.
    #[error("not a valid x-only public key: {0}")]
    InvalidPublicKey(String),
    /// Not 64 lower-case hex characters, or 32 bytes that are zero or not below the curve
    /// order.
    #[error(
        "not a valid secret key (64 lower-case hex characters, nonzero, below the curve order)"
    )]
    InvalidSecretKey,
    /// Not a bech32m string with the `coffer` prefix and a 32-byte payload.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The offending input.
        address: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A BIP340 x-only public key (32 bytes). JSON: lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(secp256k1::XOnlyPublicKey);

impl PublicKey {
    /// Parses 32 bytes; fails unless they are the x coordinate of a point on the curve.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        secp256k1::XOnlyPublicKey::from_byte_array(bytes)
            .map(PublicKey)
            .map_err(|e| KeyError::InvalidPublicKey(format!("{}: {e}", hex::encode(bytes))))
    }

    /// The 32-byte serialisation.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.serialize()
    }

    /// The wallet address owned by this key.
    pub fn address(&self) -> Address {
        Address(tagged_hash(tags::ADDRESS, &[&self.to_bytes()]))
    }

    /// Verifies a BIP340 signature over a 32-byte message.
    pub fn verify(&self, msg: &[u8; 32], sig: &Signature) -> bool {
        VERIFIER.with(|ctx| ctx.verify_schnorr(&sig.0, msg, &self.0).is_ok())
    }

    /// The underlying secp256k1 key.
    pub fn inner(&self) -> &secp256k1::XOnlyPublicKey {
        &self.0
    }
}

/// Turns the 32 bytes of an x-only key into a [`PublicKey`], for decoders
/// ([`crate::SignedTransaction::decode_with`]). Parsing is a field square root, about a tenth
/// of a signature check, so a replica that sees the same signers again may remember the keys
/// it parsed. An implementation must answer exactly as [`PublicKey::from_bytes`] does: the
/// result is a function of the bytes.
pub trait KeyParser {
    /// `bytes` parsed, or why they are not a key.
    fn parse_key(&self, bytes: [u8; 32]) -> Result<PublicKey, KeyError>;
}

/// Parses every key afresh: what the plain decoders use.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseEveryKey;

impl KeyParser for ParseEveryKey {
    fn parse_key(&self, bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::hash::Hex::new(&self.to_bytes()).as_str())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PublicKey::from_bytes(parse_hex::<32>(s)?)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::hash::Hex::new(&self.to_bytes()).as_str())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A 64-byte BIP340 Schnorr signature. JSON: lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(secp256k1::schnorr::Signature);

impl Signature {
    /// Wraps 64 bytes. Any 64 bytes are a syntactically valid signature; validity is decided by
    /// [`PublicKey::verify`].
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(secp256k1::schnorr::Signature::from_byte_array(bytes))
    }

    /// The 64-byte serialisation.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_byte_array()
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::hash::Hex::new(&self.to_bytes()).as_str())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Ok(Signature::from_bytes(parse_hex::<64>(s)?))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::hash::Hex::new(&self.to_bytes()).as_str())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A wallet (or issuer) key pair. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Keypair(secp256k1::Keypair);

impl Keypair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Self {
        with_signer(|ctx| Keypair(secp256k1::Keypair::new(ctx, &mut secp256k1::rand::rng())))
    }

    /// The key pair for a 32-byte secret key.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Result<Self, KeyError> {
        with_signer(|ctx| secp256k1::Keypair::from_seckey_byte_array(ctx, secret))
            .map(Keypair)
            .map_err(|_| KeyError::InvalidSecretKey)
    }

    /// Parses a 64-character lower-case hex secret key. Errors never quote the input (it is a
    /// secret): bad hex of any kind is `InvalidSecretKey`.
    pub fn from_secret_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = parse_hex::<32>(s).map_err(|_| KeyError::InvalidSecretKey)?;
        Keypair::from_secret_bytes(bytes)
    }

    /// The 32-byte secret key. Handle with care.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.secret_bytes()
    }

    /// The x-only public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.x_only_public_key().0)
    }

    /// The address this key pair spends from.
    pub fn address(&self) -> Address {
        self.public_key().address()
    }

    /// Signs a transaction (for the chain named in it) with fresh auxiliary randomness; same as
    /// [`crate::Transaction::sign`].
    pub fn sign_tx(&self, tx: crate::Transaction) -> crate::SignedTransaction {
        tx.sign(self)
    }

    /// BIP340-signs a 32-byte message with fresh auxiliary randomness.
    pub fn sign_msg(&self, msg: &[u8; 32]) -> Signature {
        let mut aux_rand = [0u8; 32];
        secp256k1::rand::RngCore::fill_bytes(&mut secp256k1::rand::rng(), &mut aux_rand);
        self.sign_msg_with_aux(msg, &aux_rand)
    }

    /// BIP340-signs a 32-byte message with the given auxiliary randomness (deterministic; used
    /// by golden vectors and tests).
    pub fn sign_msg_with_aux(&self, msg: &[u8; 32], aux_rand: &[u8; 32]) -> Signature {
        with_signer(|ctx| Signature(ctx.sign_schnorr_with_aux_rand(msg, &self.0, aux_rand)))
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({}, secret: <redacted>)", self.public_key())
    }
}

/// A wallet address: the tagged hash of an x-only public key.
///
/// `Display`/`FromStr`/JSON: bech32m with human-readable part `coffer` and the 32-byte hash as
/// payload (65 characters, lower case). Parsing accepts only bech32m (not bech32) checksums.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The 32-byte key hash.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::InvalidAddress {
            address: s.to_owned(),
            reason,
        };
        // Mixed or upper case is legal bech32 but we keep one spelling per address.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("upper-case characters".into()));
        }
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|e| bad(e.to_string()))?;
        if checked.hrp().as_str() != ADDRESS_HRP {
            return Err(bad(format!(
                "prefix {} is not {ADDRESS_HRP}",
                checked.hrp()
            )));
        }
        let payload: Vec<u8> = checked.byte_iter().collect();
        let got = payload.len();
        let bytes: [u8; 32] = payload
            .try_into()
            .map_err(|_| bad(format!("payload is {got} bytes, expected 32")))?;
        // The 5-bit to 8-bit conversion drops up to 4 padding bits; they must be zero or two
        // strings would name the same address.
        let canonical = Address(bytes).to_string();
        if canonical != s {
            return Err(bad("non-canonical padding".into()));
        }
        Ok(Address(bytes))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(byte: u8) -> Keypair {
        Keypair::from_secret_bytes([byte; 32]).expect("valid test key")
    }

    #[test]
    fn address_round_trips_and_is_bech32m() {
        let a = kp(7).address();
        let s = a.to_string();
        assert!(s.starts_with("coffer1"), "{s}");
        assert_eq!(s.len(), 65);
        assert_eq!(s.parse::<Address>(), Ok(a));
        let json = serde_json::to_string(&a).expect("serialise");
        assert_eq!(serde_json::from_str::<Address>(&json).ok(), Some(a));
    }

    #[test]
    fn address_rejects_bad_strings() {
        let s = kp(7).address().to_string();
        // Flip one data character: checksum fails.
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == 'q' { 'p' } else { 'q' };
        let flipped: String = chars.into_iter().collect();
        assert!(flipped.parse::<Address>().is_err());
        assert!(s.to_uppercase().parse::<Address>().is_err());
        // Same payload, bech32 (not bech32m) checksum.
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        let bech32 = bech32::encode::<bech32::Bech32>(hrp, &kp(7).address().0).expect("encode");
        assert!(bech32.parse::<Address>().is_err());
        // Wrong prefix.
        let other =
            bech32::encode::<Bech32m>(Hrp::parse_unchecked("bc"), &[1u8; 32]).expect("encode");
        assert!(other.parse::<Address>().is_err());
        // Wrong length.
        let short = bech32::encode::<Bech32m>(hrp, &[1u8; 20]).expect("encode");
        assert!(short.parse::<Address>().is_err());
    }

    #[test]
    fn sign_and_verify() {
        let k = kp(9);
        let msg = [3u8; 32];
        let sig = k.sign_msg(&msg);
        assert!(k.public_key().verify(&msg, &sig));
        assert!(!k.public_key().verify(&[4u8; 32], &sig));
        assert!(!kp(10).public_key().verify(&msg, &sig));
        let det = k.sign_msg_with_aux(&msg, &[0u8; 32]);
        assert_eq!(det, k.sign_msg_with_aux(&msg, &[0u8; 32]));
    }

    #[test]
    fn signatures_survive_context_rerandomization() {
        // The blinding state changes every RERANDOMIZE_EVERY signatures; what is signed must not.
        let k = kp(11);
        let msg = [5u8; 32];
        let first = k.sign_msg_with_aux(&msg, &[9u8; 32]);
        let uses = || SIGNER.with(|s| s.borrow().uses);
        let mut randomized = 0;
        for i in 0..(3 * RERANDOMIZE_EVERY) {
            let before = uses();
            let msg_i = [i.to_le_bytes()[0]; 32];
            let sig = k.sign_msg(&msg_i);
            assert!(k.public_key().verify(&msg_i, &sig), "signature {i}");
            if uses() <= before {
                randomized += 1;
            }
            assert!(uses() <= RERANDOMIZE_EVERY);
        }
        assert!(
            randomized >= 2,
            "the context was re-randomized {randomized} times"
        );
        assert_eq!(k.sign_msg_with_aux(&msg, &[9u8; 32]), first);
        // Fresh auxiliary randomness: two signatures of one message differ, and both verify.
        let (a, b) = (k.sign_msg(&msg), k.sign_msg(&msg));
        assert_ne!(a, b);
        assert!(k.public_key().verify(&msg, &a) && k.public_key().verify(&msg, &b));
    }

    #[test]
    fn keys_parse_and_reject() {
        assert!(Keypair::from_secret_bytes([0u8; 32]).is_err());
        assert!(Keypair::from_secret_bytes([0xff; 32]).is_err());
        let pk = kp(1).public_key();
        assert_eq!(pk.to_string().parse::<PublicKey>(), Ok(pk));
        // BIP340 test vector 5: "public key not on the curve".
        let off = "eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34";
        assert!(off.parse::<PublicKey>().is_err());
        assert!(!format!("{:?}", kp(1)).contains(&hex::encode([1u8; 32])));
        // A refused secret is never quoted in the error (upper case, a bad character, a
        // wrong length).
        let secret = hex::encode([0xab; 32]);
        assert_eq!(
            Keypair::from_secret_hex(&secret).map(|k| k.secret_bytes()),
            Ok([0xab; 32])
        );
        for bad in [
            secret.to_uppercase(),
            format!("{}g", &secret[1..]),
            secret[2..].to_owned(),
        ] {
            let err = Keypair::from_secret_hex(&bad)
                .expect_err("refused")
                .to_string();
            assert!(!err.contains(&bad[4..20]), "{err}");
        }
    }
}
