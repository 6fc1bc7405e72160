//! The HTTPS server: accept loop with a connection limit, TLS handshakes with a deadline,
//! HTTP/1.1 connections with header timeouts, and the per-request pipeline (rate limit, route,
//! timeout, error envelope, metrics).

use super::backend::Backend;
use super::error::{ApiError, codes};
use super::limits::{RateLimit, RateLimiter};
use super::metrics::Metrics;
use super::routes;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Limits and timeouts of the REST API. Every field has a default suited to a replica on a
/// small machine.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    /// Largest request body in bytes. A signed transaction is at most 32 KiB encoded, about
    /// twice that as JSON hex... so 128 KiB leaves room without inviting floods.
    pub max_body_bytes: usize,
    /// Most connections open at once; more are dropped on accept.
    pub max_connections: usize,
    /// Per-client-address request rate.
    pub rate_limit: RateLimit,
    /// Deadline for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Deadline for a request's headers (also bounds how long an idle keep-alive connection
    /// is kept).
    pub header_read_timeout: Duration,
    /// Deadline for reading a request body once the headers arrived (408 after).
    pub body_read_timeout: Duration,
    /// Deadline for answering a read (504 after).
    pub request_timeout: Duration,
    /// Deadline for a submission that waits for its commit (504 after).
    pub submit_timeout: Duration,
    /// Default page size for UTXOs and history.
    pub default_page: u32,
    /// Largest page size a client may ask for.
    pub max_page: u32,
    /// Most blocks one range request may return.
    pub max_block_range: u64,
    /// Longest a connection stays open, however busy; it is then closed after its current
    /// request, so that no client holds a connection slot for good.
    pub max_connection_age: Duration,
    /// How long a connection past its age may take to finish its current request.
    pub shutdown_grace: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 128 * 1024,
            max_connections: 1024,
            rate_limit: RateLimit::default(),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(30),
            default_page: 100,
            max_page: 1000,
            max_block_range: 100,
            max_connection_age: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Shared by every connection.
pub(crate) struct State<B> {
    pub(crate) config: ApiConfig,
    pub(crate) backend: Arc<B>,
    pub(crate) metrics: Arc<Metrics>,
    limiter: RateLimiter,
}

/// What the accept loop and the connections are told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Serve.
    Running,
    /// Stop accepting; let each connection finish its current request, for at most this long.
    Drain(Duration),
    /// Stop accepting and close every connection now.
    Abort,
}

/// A running API server. Dropping it does not stop it: call [`ApiServer::shutdown`] or
/// [`ApiServer::drain`].
pub struct ApiServer {
    local_addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: watch::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Binds `addr` (port 0 picks a free port) and serves `backend` over TLS until shut down.
    /// `tls` comes from [`super::tls::server_config_from_files`] (TLS 1.3 only unless its
    /// `allow_tls12` is set).
    pub async fn start<B: Backend>(
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        config: ApiConfig,
        backend: Arc<B>,
    ) -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let state = Arc::new(State {
            limiter: RateLimiter::new(config.rate_limit),
            config,
            backend,
            metrics: metrics.clone(),
        });
        let (stop, stopped) = watch::channel(Stop::Running);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            state,
            stopped,
        ));
        Ok(ApiServer {
            local_addr,
            metrics,
            stop,
            task,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's metrics (also served at `/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, closes every connection and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(Stop::Abort);
        let _ = self.task.await;
    }

    /// Stops accepting (the listening socket is closed), lets every open connection finish the
    /// request it is serving (then closes it, keep-alive or not), and returns once all are
    /// closed or `grace` has passed; connections still open then are closed.
    pub async fn drain(self, grace: Duration) {
        let _ = self.stop.send(Stop::Drain(grace));
        let _ = self.task.await;
    }
}

async fn accept_loop<B: Backend>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State<B>>,
    mut stopped: watch::Receiver<Stop>,
) {
    let permits = Arc::new(Semaphore::new(state.config.max_connections));
    let mut connections = JoinSet::new();
    let to_connections = stopped.clone();
    loop {
        tokio::select! {
            // The guard `wait_for` returns is not `Send`: drop it inside.
            _ = async { drop(stopped.wait_for(|s| *s != Stop::Running).await) } => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(_) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    state.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let state = state.clone();
                let acceptor = acceptor.clone();
                let stopped = to_connections.clone();
                connections.spawn(async move {
                    state.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
                    state.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                    serve_connection(tcp, peer, acceptor, state.clone(), stopped).await;
                    state.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        }
    }
    // New connections are refused from here on.
    drop(listener);
    let mode = *stopped.borrow();
    if let Stop::Drain(grace) = mode {
        let drained = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(grace, drained).await;
    }
    connections.shutdown().await;
}

async fn serve_connection<B: Backend>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State<B>>,
    mut stopped: watch::Receiver<Stop>,
) {
    let tls = match tokio::time::timeout(state.config.handshake_timeout, acceptor.accept(tcp)).await
    {
        Ok(Ok(tls)) => tls,
        _ => {
            state.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let ip = peer.ip();
    let header_read_timeout = state.config.header_read_timeout;
    let (max_age, grace) = (state.config.max_connection_age, state.config.shutdown_grace);
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, ip).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        // Bounds the header section (and so header count and size) per connection.
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service);
    let mut conn = std::pin::pin!(conn);
    // Errors are the client's (reset, timeout, garbage): the connection simply ends. A
    // connection kept busy forever (or reading its responses too slowly) would hold a slot for
    // good, so every connection has a maximum age, then a grace period to finish its request.
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = tokio::time::sleep(max_age) => {}
        // Draining: finish the request in progress, then close (the accept loop bounds it).
        _ = async { drop(stopped.wait_for(|s| *s != Stop::Running).await) } => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(grace, conn).await;
}

/// The per-request pipeline. Never fails: every error becomes a JSON error response.
pub(crate) async fn handle<B: Backend>(
    state: &Arc<State<B>>,
    req: Request<Incoming>,
    ip: IpAddr,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (route, result) = if state.limiter.allow(ip, started) {
        routes::dispatch(state, req).await
    } else {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        (
            "rate_limited",
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!(
                    "client {ip} is over {} requests per second",
                    state.config.rate_limit.per_second
                ),
            )),
        )
    };
    let response = result.unwrap_or_else(|e| error_response(&e));
    state
        .metrics
        .record(route, response.status().as_u16(), started.elapsed());
    response
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    response(status, "application/json", body)
}

/// A response of `content_type`, never cached.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The error envelope as a response.
pub(crate) fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let mut response = json_response(e.status, e.body());
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    // A 405 says which methods the resource has (RFC 9110 §15.5.6), in the header as well as
    // in `details.allow`.
    if e.status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = e
            .details
            .as_ref()
            .and_then(|d| d.get("allow"))
            .and_then(|a| a.as_str())
            .and_then(|a| header::HeaderValue::from_str(a).ok())
    {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
