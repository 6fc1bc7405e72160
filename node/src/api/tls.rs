//! TLS for the REST API: rustls configurations from PEM files, and a generator of a dev CA and
//! per-replica server certificates (used by `fixtures/tls/gen.sh` and by the testnet generator).
//!
//! The crypto provider is always `ring`, passed explicitly: relying on the process default
//! would panic at startup if some other crate in the build enabled a second provider.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol the server speaks. HTTP/1.1 only: one request at a time per connection keeps
/// the per-connection cost bounded and the limits simple.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Subject alternative names every generated server certificate carries, so that a client can
/// reach a replica on loopback by name or by v4/v6 address.
pub const LOOPBACK_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// What was expected (certificate chain, private key, CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A PEM file held no certificate.
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the configuration (key does not match the certificate, bad CA, ...).
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// rcgen could not make a certificate.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A name that is neither a DNS name nor an IP address.
    #[error("invalid server name {0:?}")]
    BadServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(allow_tls12: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    if allow_tls12 {
        rustls::ALL_VERSIONS
    } else {
        &TLS13_ONLY
    }
}

fn pem_err(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads every certificate of a PEM file (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err("certificates", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificates", path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err("private key", path, e))
}

/// Server configuration from a certificate chain and key in PEM. TLS 1.3 only unless
/// `allow_tls12`; ALPN `http/1.1`.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    allow_tls12: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(allow_tls12))?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files.
pub fn server_config_from_files(
    cert_path: &Path,
    key_path: &Path,
    allow_tls12: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config(load_certs(cert_path)?, load_key(key_path)?, allow_tls12)
}

/// Where a replica's API certificate and key live, and which TLS versions to accept: the part
/// of a replica's configuration file that concerns the REST API's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_path: PathBuf,
    /// Accept TLS 1.2 as well as 1.3. Off by default: every client we ship speaks 1.3.
    pub allow_tls12: bool,
}

impl TlsSettings {
    /// The dev files of replica `index` under `fixtures/tls` of the repository at `root`.
    pub fn dev(root: &Path, index: usize) -> Self {
        let dir = root.join("fixtures/tls");
        TlsSettings {
            cert_path: dir.join(format!("replica-{index}.pem")),
            key_path: dir.join(format!("replica-{index}.key")),
            allow_tls12: false,
        }
    }

    /// Loads the files into a server configuration.
    pub fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        server_config_from_files(&self.cert_path, &self.key_path, self.allow_tls12)
    }
}

/// Client configuration that trusts only the certificates in `ca_pem` (the cluster's CA:
/// clients pin it rather than trusting the system roots). TLS 1.3 only.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| pem_err("CA certificate", Path::new("<memory>"), e))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate(PathBuf::from("<memory>")));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(false))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Parses a host (DNS name or IP address) into a TLS server name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::BadServerName(host.to_owned()))
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct PemPair {
    /// The certificate.
    pub cert_pem: String,
    /// Its PKCS#8 private key. Secret.
    pub key_pem: String,
}

/// A dev CA and one server certificate per replica, signed by it.
#[derive(Clone, Debug)]
pub struct DevPki {
    /// The CA that clients pin.
    pub ca: PemPair,
    /// Server certificates, in the order of the names given to [`generate_dev_pki`].
    pub servers: Vec<(String, PemPair)>,
}

/// Makes a fresh CA (ECDSA P-256) and, for each replica name, a server certificate whose SANs are
/// [`LOOPBACK_SANS`], the replica name and `extra_sans` (DNS names or IP addresses, e.g. the
/// container host names of a compose file). Certificates are valid from 1975 to 4096: these
/// are development files, rotated by regenerating them.
pub fn generate_dev_pki(replicas: &[&str], extra_sans: &[&str]) -> Result<DevPki, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("Coffer dev CA (NOT FOR PRODUCTION)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = PemPair {
        cert_pem: ca_cert.pem(),
        key_pem: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let mut servers = Vec::with_capacity(replicas.len());
    for replica in replicas {
        let mut sans: Vec<String> = LOOPBACK_SANS.iter().map(|s| s.to_string()).collect();
        sans.push(replica.to_string());
        sans.extend(extra_sans.iter().map(|s| s.to_string()));
        sans.dedup();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = name(&format!("Coffer dev replica {replica}"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        servers.push((
            replica.to_string(),
            PemPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
        ));
    }
    Ok(DevPki { ca, servers })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes `ca.pem`, `ca.key` and `<replica>.pem` / `<replica>.key` for each replica into `dir`;
/// the keys are readable by their owner only.
pub fn write_dev_pki(pki: &DevPki, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), &pki.ca.cert_pem)?;
    write_private(&dir.join("ca.key"), pki.ca.key_pem.as_bytes())?;
    for (replica, pair) in &pki.servers {
        std::fs::write(dir.join(format!("{replica}.pem")), &pair.cert_pem)?;
        write_private(&dir.join(format!("{replica}.key")), pair.key_pem.as_bytes())?;
    }
    Ok(())
}

/// Writes `contents` to `path`, readable and writable by its owner only (mode 0600 on Unix,
/// also when the file already existed).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pki_builds_server_and_client_configs() {
        let pki = generate_dev_pki(&["replica-0", "replica-1"], &["10.0.0.5"]).expect("pki");
        assert_eq!(pki.servers.len(), 2);
        for (_, pair) in &pki.servers {
            let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("cert pem");
            let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).expect("key pem");
            server_config(chain, key, false).expect("server config");
        }
        client_config(pki.ca.cert_pem.as_bytes()).expect("client config");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let pki = generate_dev_pki(&["a", "b"], &[]).expect("pki");
        let chain = CertificateDer::pem_slice_iter(pki.servers[0].1.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let other_key =
            PrivateKeyDer::from_pem_slice(pki.servers[1].1.key_pem.as_bytes()).expect("key");
        assert!(server_config(chain, other_key, false).is_err());
    }

    #[test]
    fn checked_in_dev_files_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for i in 0..4 {
            TlsSettings::dev(&root, i).load().expect("dev files");
        }
        let missing = TlsSettings {
            cert_path: "/nonexistent.pem".into(),
            ..TlsSettings::dev(&root, 0)
        };
        assert!(matches!(missing.load(), Err(TlsError::Pem { .. })));
    }

    #[test]
    fn empty_ca_is_refused() {
        assert!(client_config(b"").is_err());
    }
}
