//! HTTPS to one replica: hyper's HTTP/1.1 client connection over tokio-rustls (ring provider),
//! trusting only the cluster's CA. Connections are kept alive and reused (a TLS handshake costs
//! far more CPU than a request, which matters to busy clients such as the benchmark), but only
//! after a complete answer: a connection whose request failed or timed out is dropped, so a
//! stalled replica can never hold up the next attempt through a reused connection.

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest response body accepted: a page of 1000 history entries with 2f+1 attestations is
/// under 400 KiB; more is a misbehaving replica.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Most idle connections kept per replica: enough for a benchmark's concurrent requests, and a
/// bound on the sockets a client holds.
pub const MAX_IDLE_PER_REPLICA: usize = 64;
/// ALPN protocol the gateways speak.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a request to one replica got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A URL the client cannot use.
    #[error("bad url {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The CA certificate could not be used.
    #[error("bad CA certificate: {0}")]
    BadCa(String),
    /// TCP connection failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// host:port.
        addr: String,
        /// The OS's message.
        reason: String,
    },
    /// TLS handshake failed (e.g. a certificate not signed by the cluster's CA).
    #[error("tls with {addr}: {reason}")]
    Tls {
        /// host:port.
        addr: String,
        /// rustls' message.
        reason: String,
    },
    /// HTTP-level failure (connection reset mid-answer, ...).
    #[error("http with {addr}: {reason}")]
    Http {
        /// host:port.
        addr: String,
        /// hyper's message.
        reason: String,
    },
    /// No complete answer within the deadline.
    #[error("{addr} did not answer within {timeout_ms} ms")]
    Timeout {
        /// host:port.
        addr: String,
        /// The deadline.
        timeout_ms: u128,
    },
    /// An answer larger than [`MAX_RESPONSE_BYTES`].
    #[error("answer from {addr} larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge {
        /// host:port.
        addr: String,
    },
}

/// A parsed `https://host:port` base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://host[:port]` (default port 443; IPv6 as `[::1]:port`; an optional
    /// trailing `/`). Anything else (another scheme, a path, user info) is refused.
    pub fn parse(url: &str) -> Result<Endpoint, NetError> {
        let bad = |reason: &str| NetError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("only https:// is supported"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return Err(bad("want https://host:port with no path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => 443,
            Some(p) => p.parse().map_err(|_| bad("port is not 0..=65535"))?,
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        ServerName::try_from(host.to_owned()).map_err(|_| bad("host is not a valid name"))?;
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A status and body from one replica.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// The body's media type (`Content-Type` without parameters), empty when absent.
    pub media_type: String,
    /// The whole body.
    pub body: Bytes,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// TLS settings and idle connections shared by every request (clones share the pool).
#[derive(Clone)]
pub struct Transport {
    tls: TlsConnector,
    idle: Arc<Mutex<HashMap<String, Vec<Sender>>>>,
}

/// A request body and its media type.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes sent.
    pub bytes: Bytes,
    /// Their `Content-Type`.
    pub content_type: &'static str,
    /// The `Accept` sent with them.
    pub accept: &'static str,
}

impl Body {
    /// A JSON document.
    pub fn json(bytes: impl Into<Bytes>) -> Self {
        Body {
            bytes: bytes.into(),
            content_type: "application/json",
            accept: "application/json",
        }
    }

    /// A signed transaction in its canonical encoding, which replicas take without parsing
    /// JSON, asking for the answer in binary too ([`coffer_ledger::rest::SubmitOutcome`]'s
    /// binary form; a replica that does not offer it answers JSON).
    pub fn transaction(tx: &coffer_ledger::SignedTransaction) -> Self {
        Body {
            bytes: tx.encode().into(),
            content_type: coffer_ledger::SignedTransaction::MEDIA_TYPE,
            accept: "application/octet-stream, application/json",
        }
    }
}

impl Transport {
    /// Trusts only the certificates in `ca_pem`; TLS 1.3 only, ALPN http/1.1.
    pub fn new(ca_pem: &[u8]) -> Result<Transport, NetError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| NetError::BadCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| NetError::BadCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(NetError::BadCa("no certificate in the PEM".into()));
        }
        // The provider is passed explicitly: the process default would panic if another crate
        // in the build enabled a second one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| NetError::BadCa(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Transport {
            tls: TlsConnector::from(Arc::new(config)),
            idle: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Sends one request and reads the whole answer within `timeout`.
    pub async fn request(
        &self,
        endpoint: &Endpoint,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
        timeout: Duration,
    ) -> Result<Reply, NetError> {
        let addr = endpoint.addr();
        match tokio::time::timeout(
            timeout,
            self.request_inner(endpoint, &addr, method, path_and_query, body),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout {
                addr,
                timeout_ms: timeout.as_millis(),
            }),
        }
    }

    /// An idle connection to `addr` that is still open, if any.
    fn take_idle(&self, addr: &str) -> Option<Sender> {
        // A poisoned lock only means another request panicked while holding it; the map of
        // idle connections is still valid.
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some(sender) = list.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, addr: &str, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr.to_owned()).or_default();
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(sender);
        }
    }

    async fn connect(&self, endpoint: &Endpoint, addr: &str) -> Result<Sender, NetError> {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| NetError::Connect {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        // Requests are small and latency-bound: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| NetError::BadUrl {
            url: endpoint.host.clone(),
            reason: "host is not a valid name".into(),
        })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| NetError::Tls {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| NetError::Http {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        // The connection task ends when the server closes it or the sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn request_inner(
        &self,
        endpoint: &Endpoint,
        addr: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Body>,
    ) -> Result<Reply, NetError> {
        let http = |e: hyper::Error| NetError::Http {
            addr: addr.to_owned(),
            reason: e.to_string(),
        };
        let content_type = body.as_ref().map(|b| b.content_type);
        let accept = body.as_ref().map_or("application/json", |b| b.accept);
        let body = body.map(|b| b.bytes).unwrap_or_default();
        let build = |body: Bytes| {
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path_and_query)
                .header(header::HOST, endpoint.host.as_str())
                .header(header::ACCEPT, accept);
            if let Some(content_type) = content_type {
                req = req.header(header::CONTENT_TYPE, content_type);
            }
            req.body(Full::new(body)).map_err(|e| NetError::Http {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })
        };
        // A reused connection may have been closed by the server in the meantime; then the
        // request is sent once more on a fresh one (requests are idempotent: a resubmitted
        // transaction has the same txid and is never applied twice).
        let mut sent = None;
        if let Some(mut sender) = self.take_idle(addr)
            && sender.ready().await.is_ok()
            && let Ok(resp) = sender.send_request(build(body.clone())?).await
        {
            sent = Some((sender, resp));
        }
        let (sender, resp) = match sent {
            Some(s) => s,
            None => {
                let mut sender = self.connect(endpoint, addr).await?;
                let resp = sender.send_request(build(body)?).await.map_err(http)?;
                (sender, resp)
            }
        };
        let status = resp.status();
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    NetError::TooLarge {
                        addr: addr.to_owned(),
                    }
                } else {
                    NetError::Http {
                        addr: addr.to_owned(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        self.put_idle(addr, sender);
        Ok(Reply {
            status,
            media_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_strictly() {
        let e = Endpoint::parse("https://127.0.0.1:7001").expect("v4");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 7001));
        let e = Endpoint::parse("https://[::1]:8443/").expect("v6");
        assert_eq!(
            (e.host.as_str(), e.port, e.addr()),
            ("::1", 8443, "[::1]:8443".into())
        );
        assert_eq!(
            Endpoint::parse("https://node.example").expect("dns").port,
            443
        );
        for bad in [
            "http://127.0.0.1:1",
            "https://",
            "https://h:1/v1",
            "https://u@h:1",
            "https://h:99999",
            "https://[::1",
            "127.0.0.1:7001",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_ca_is_refused() {
        assert!(matches!(Transport::new(b""), Err(NetError::BadCa(_))));
    }
}
