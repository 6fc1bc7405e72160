//! The keystore file: round trip through disk, 0600 permissions, wrong password, one password
//! per file, tampering and insecure files refused.

use coffer_ledger::Keypair;
use coffer_wallet::{KdfParams, Keystore, KeystoreError};
use std::os::unix::fs::PermissionsExt as _;

/// Light parameters so that the tests stay fast; real keystores use `KdfParams::default()`.
const LIGHT: KdfParams = KdfParams {
    m_cost_kib: 256,
    t_cost: 1,
    p_cost: 1,
};

#[test]
fn round_trip_through_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("nested/keystore.json");
    let (alice, bob) = (Keypair::generate(), Keypair::generate());
    let mut ks = Keystore::open_or_create(&path, LIGHT).expect("create");
    ks.add("alice", &alice, "correct horse").expect("add alice");
    ks.add("bob", &bob, "correct horse").expect("add bob");
    ks.save().expect("save");

    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        !text.contains(&hex::encode(alice.secret_bytes())),
        "secret stored in clear"
    );

    let ks = Keystore::open(&path).expect("open");
    assert_eq!(ks.params(), LIGHT);
    let names: Vec<String> = ks.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(ks.info("bob").expect("bob").address, bob.address());
    let back = ks.unlock("alice", "correct horse").expect("unlock");
    assert_eq!(back.secret_bytes(), alice.secret_bytes());
    assert!(matches!(
        ks.unlock("carol", "correct horse"),
        Err(KeystoreError::UnknownKey(_))
    ));
}

#[test]
fn wrong_password_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("k.json");
    let mut ks = Keystore::create(&path, LIGHT).expect("create");
    ks.add("alice", &Keypair::generate(), "right").expect("add");
    ks.save().expect("save");
    let mut ks = Keystore::open(&path).expect("open");
    let err = ks.unlock("alice", "wrong").expect_err("wrong password");
    assert!(matches!(err, KeystoreError::WrongPassword(_)), "{err}");
    assert_eq!(err.code(), "wrong_password");
    // A second key must use the file's password.
    assert!(matches!(
        ks.add("bob", &Keypair::generate(), "wrong"),
        Err(KeystoreError::WrongPassword(_))
    ));
    assert!(matches!(
        ks.add("alice", &Keypair::generate(), "right"),
        Err(KeystoreError::DuplicateName(_))
    ));
}

#[test]
fn tampered_and_insecure_files_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("k.json");
    let mut ks = Keystore::create(&path, LIGHT).expect("create");
    let key = Keypair::generate();
    ks.add("alice", &key, "pw").expect("add");
    ks.save().expect("save");

    // Another public key pasted into the entry: the ciphertext no longer authenticates.
    let other = Keypair::generate();
    let text = std::fs::read_to_string(&path).expect("read");
    let swapped = text
        .replace(
            &key.public_key().to_string(),
            &other.public_key().to_string(),
        )
        .replace(&key.address().to_string(), &other.address().to_string());
    std::fs::write(&path, swapped).expect("write");
    let ks = Keystore::open(&path).expect("parses");
    assert!(ks.unlock("alice", "pw").is_err());

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        Keystore::open(&path),
        Err(KeystoreError::InsecurePermissions { mode: 0o644, .. })
    ));

    // A crafted file asking for absurd memory is refused before any derivation.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = std::fs::read_to_string(&path).expect("read");
    let heavy = text.replace("\"m_cost_kib\": 256", "\"m_cost_kib\": 4000000000");
    assert_ne!(heavy, text);
    std::fs::write(&path, heavy).expect("write");
    assert!(matches!(
        Keystore::open(&path),
        Err(KeystoreError::BadParams(_))
    ));
}

#[test]
fn keys_added_at_once_are_all_kept() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("keystore.json");
    Keystore::update(&path, LIGHT, |ks| {
        ks.add("first", &Keypair::generate(), "pw")
    })
    .expect("first key");
    // Eight writers at once, each reading the file, adding a key (an argon2 run) and saving:
    // without the lock, later saves dropped keys that earlier ones had reported added.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                Keystore::update(&path, LIGHT, |ks| {
                    ks.add(&format!("k{i}"), &Keypair::generate(), "pw")
                })
                .expect("add")
            })
        })
        .collect();
    let added: Vec<String> = writers
        .into_iter()
        .map(|w| w.join().expect("writer").name)
        .collect();
    let ks = Keystore::open(&path).expect("open");
    let mut names: Vec<String> = ks.list().into_iter().map(|i| i.name).collect();
    names.sort();
    let mut want: Vec<String> = added;
    want.push("first".into());
    want.sort();
    assert_eq!(names, want);
    let lock = dir.path().join("keystore.json.lock");
    let mode = std::fs::metadata(&lock)
        .expect("lock file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
