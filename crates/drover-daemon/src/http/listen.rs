//! Binding and serving HTTP: TCP (plain on loopback, TLS off loopback or when configured) and the
//! unix socket in the state directory, each with its own accept loop and connection limits.
//!
//! Every connection is bounded in time and number (docs/HTTP.md, "Connections"):
//! - the request head must be complete within `header_timeout` of the connection being ready for
//!   it (hyper's header-read timer; a client trickling its head is cut off, and no answer is sent);
//! - a connection with no request in progress and no bytes either way for `idle_timeout` is
//!   closed (an idle keep-alive connection; a streaming response is a request in progress);
//! - a TLS handshake must finish within `tls_handshake_timeout`;
//! - a response the peer reads nothing of for `send_timeout` (a write waiting on a full window
//!   all that time) ends the connection: a peer that stopped reading holds no slot, and no
//!   kernel buffer, for longer; counted in `drover_http_stalled_total`;
//! - at most `max_connections` are open per listener: one more is answered at once with
//!   `429 limit_reached` (plain HTTP; a TLS connection is just closed) and closed, never queued;
//! - at most `max_per_peer` of them come from one remote address (an IPv6 peer's /64), so one
//!   machine trickling request heads or holding handshakes open cannot take every slot from the
//!   others. Loopback peers share only the listener's cap: on one machine they are one address
//!   (a local reverse proxy, a browser and the CLI), and a local user can be refused by file
//!   permission on the unix socket instead.
//!
//! hyper answers a malformed request line or header (400), a head over [`MAX_HEAD`] (431) and an
//! over-long URI (414) itself, with an empty body; [`io::ConnIo`] replaces those answers with the
//! JSON error body every other error has.

mod io;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::{Config, DaemonError};
use io::{Activity, ConnIo};

/// Largest request head (request line and headers); beyond it, 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// `TCP_NOTSENT_LOWAT` of every HTTP connection: unsent bytes the kernel keeps for one.
const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Limits on HTTP connections (see the module documentation and docs/HTTP.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once on each listener (TCP, unix socket).
    pub max_connections: usize,
    /// Most connections open at once on the TCP listener from one non-loopback address (for
    /// IPv6, one /64).
    pub max_per_peer: usize,
    /// How long a request head may take to arrive, from the moment the connection is ready for
    /// it (accepted, or the previous response finished).
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in progress and no bytes either way.
    pub idle_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long a write may wait for the peer to read anything before the connection is closed.
    pub send_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 512,
            max_per_peer: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            tls_handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// How a request reached the daemon; every request carries one as an extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The unix socket in the state directory: file permission is the credential.
    Unix,
    /// TCP. `loopback` when the listener is bound to a loopback address.
    Tcp { tls: bool, loopback: bool },
}

/// The bound HTTP listeners.
pub(crate) struct HttpListeners {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    loopback: bool,
    unix: Option<UnixListener>,
    limits: HttpLimits,
}

impl std::fmt::Debug for HttpListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListeners")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("unix", &self.unix)
            .finish_non_exhaustive()
    }
}

/// What the ready line says about HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpAddresses {
    /// `http://127.0.0.1:7712` or `https://...` (never a wildcard address).
    pub(crate) url: String,
    /// The unix socket's path.
    pub(crate) unix: Option<String>,
    /// The certificate's fingerprint, when TLS is on.
    pub(crate) tls: Option<String>,
}

/// Bind the TCP listener (with TLS when it is not loopback or a certificate is configured) and
/// the unix socket.
pub(crate) async fn bind(config: &Config) -> Result<(HttpListeners, HttpAddresses), DaemonError> {
    let tcp = TcpListener::bind(&config.http)
        .await
        .map_err(|e| DaemonError::Bind {
            endpoint: config.http.clone(),
            reason: e.to_string(),
        })?;
    let addr = tcp.local_addr().map_err(|source| DaemonError::Io {
        context: "reading the HTTP listener's address".into(),
        source,
    })?;
    let loopback = addr.ip().is_loopback();
    let (tls, fingerprint) = if !loopback || config.tls_cert.is_some() {
        let (server, fingerprint) = crate::tls::server_config(config, addr.ip())?;
        (Some(TlsAcceptor::from(server)), Some(fingerprint))
    } else {
        (None, None)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", reachable(addr));
    let (unix, unix_path) = if config.http_unix {
        let path = config.state_dir.join("http.sock");
        let listener = bind_unix(&path)?;
        (Some(listener), Some(path.display().to_string()))
    } else {
        (None, None)
    };
    Ok((
        HttpListeners {
            tcp,
            tls,
            loopback,
            unix,
            limits: config.http_limits,
        },
        HttpAddresses {
            url,
            unix: unix_path,
            tls: fingerprint,
        },
    ))
}

/// An address a client can connect to: a wildcard bind is reached through loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Bind the unix socket 0600, removing a stale file a dead daemon left (the state lock is held,
/// so no live daemon uses it).
fn bind_unix(path: &Path) -> Result<UnixListener, DaemonError> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Config {
                reason: format!("{} is in use by another process", path.display()),
            });
        }
        std::fs::remove_file(path).map_err(|source| DaemonError::Io {
            context: format!("removing stale socket {}", path.display()),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|e| DaemonError::Bind {
        endpoint: path.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        DaemonError::Io {
            context: format!("securing {}", path.display()),
            source,
        }
    })?;
    Ok(listener)
}

/// Serve every listener until `stop` turns true, then let open connections finish (each is told
/// to close after its current response; streams end on `stop` themselves).
pub(crate) async fn run(
    listeners: HttpListeners,
    app: Router,
    stalled: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) {
    let HttpListeners {
        tcp,
        tls,
        loopback,
        unix,
        limits,
    } = listeners;
    let mut loops = JoinSet::new();
    let transport = Transport::Tcp {
        tls: tls.is_some(),
        loopback,
    };
    let served = Served {
        app,
        limits,
        stalled,
    };
    loops.spawn(accept(
        Acceptor::Tcp(tcp, tls),
        transport,
        served.clone(),
        stop.clone(),
    ));
    if let Some(unix) = unix {
        loops.spawn(accept(Acceptor::Unix(unix), Transport::Unix, served, stop));
    }
    while loops.join_next().await.is_some() {}
}

enum Acceptor {
    Tcp(TcpListener, Option<TlsAcceptor>),
    Unix(UnixListener),
}

/// What every connection is served with.
#[derive(Clone)]
struct Served {
    app: Router,
    limits: HttpLimits,
    /// Connections closed because the peer stopped reading (`send_timeout`).
    stalled: Arc<AtomicU64>,
}

/// One listener's accept loop. Dropping it (when the daemon gives up waiting at shutdown) aborts
/// its connections with it.
async fn accept(
    acceptor: Acceptor,
    transport: Transport,
    served: Served,
    mut stop: watch::Receiver<bool>,
) {
    let limits = served.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Peers::default();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = next_connection(&acceptor) => accepted,
        };
        let connection = match accepted {
            Ok(connection) => connection,
            Err(error) => {
                // Out of file descriptors, most likely: back off a little rather than spin.
                tracing::warn!(%error, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            connection.refuse(&format!(
                "the daemon already has {} open HTTP connections on this listener",
                limits.max_connections
            ));
            continue;
        };
        let Some(peer_slot) = peers.take(connection.peer(), limits.max_per_peer) else {
            connection.refuse(&format!(
                "the daemon already has {} open HTTP connections from this address",
                limits.max_per_peer
            ));
            continue;
        };
        let served = served.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _peer_slot = peer_slot;
            match connection {
                Connection::Tcp(stream, None, _) => serve(stream, transport, served, stop).await,
                Connection::Tcp(stream, Some(tls), _) => {
                    let handshake = tls.accept(stream);
                    match tokio::time::timeout(limits.tls_handshake_timeout, handshake).await {
                        Ok(Ok(stream)) => serve(stream, transport, served, stop).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                Connection::Unix(stream) => serve(stream, transport, served, stop).await,
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

enum Connection {
    Tcp(tokio::net::TcpStream, Option<TlsAcceptor>, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Connection {
    /// Over a cap: say so (plain HTTP only) and close. The answer is written without waiting:
    /// a fresh socket's send buffer always has room for it.
    fn refuse(self, message: &str) {
        let answer = io::error_response(429, "limit_reached", message);
        let _ = match &self {
            Connection::Tcp(stream, None, _) => stream.try_write(&answer),
            Connection::Unix(stream) => stream.try_write(&answer),
            Connection::Tcp(_, Some(_), _) => Ok(0),
        };
    }

    /// The remote address, for TCP.
    fn peer(&self) -> Option<IpAddr> {
        match self {
            Connection::Tcp(_, _, addr) => Some(addr.ip()),
            Connection::Unix(_) => None,
        }
    }
}

/// Connections open per remote address on one listener, for `max_per_peer`. An address has an
/// entry only while it has a connection open, so the map is never larger than the listener's
/// connection cap.
#[derive(Clone, Default)]
struct Peers(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in its address's count, given back when the connection ends.
struct PeerSlot {
    peers: Peers,
    key: Option<IpAddr>,
}

impl Peers {
    /// A slot for a connection from `addr`, or `None` if that address already has `max` open.
    /// Unix-socket and loopback connections always get one (counted by the listener's cap only).
    fn take(&self, addr: Option<IpAddr>, max: usize) -> Option<PeerSlot> {
        let key = addr.and_then(peer_key);
        if let Some(key) = key {
            let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(key).or_insert(0);
            if *count >= max {
                return None;
            }
            *count += 1;
        }
        Some(PeerSlot {
            peers: self.clone(),
            key,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut open = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// What `max_per_peer` counts a remote address as: itself for IPv4 (an IPv4-mapped IPv6 address
/// is IPv4), its /64 for IPv6 (one host commonly holds a whole /64), nothing for loopback.
fn peer_key(addr: IpAddr) -> Option<IpAddr> {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    if addr.is_loopback() {
        return None;
    }
    Some(match addr {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    })
}

async fn next_connection(acceptor: &Acceptor) -> std::io::Result<Connection> {
    match acceptor {
        Acceptor::Tcp(listener, tls) => {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            // At most this much unsent data waits in the kernel, and a blocked write is woken
            // once half of it has gone: the send-stall clock then measures a peer's reading in
            // steps of 64 KiB, not a third of a send buffer autotuned up to 4 MiB (a reader
            // taking 30 KB/s looked stalled). Also bounds the kernel memory a stalled peer holds.
            let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(NOTSENT_LOWAT);
            Ok(Connection::Tcp(stream, tls.clone(), peer))
        }
        Acceptor::Unix(listener) => Ok(Connection::Unix(listener.accept().await?.0)),
    }
}

/// Serve one connection until it closes, times out, or the daemon stops.
async fn serve<I>(io: I, transport: Transport, served: Served, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Served {
        app,
        limits,
        stalled,
    } = served;
    let activity = Arc::new(Activity::new());
    let io = ConnIo::new(io, Arc::clone(&activity));
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(transport);
            // In progress until the response body is dropped (a stream ends, or is cut off).
            let in_progress = activity.begin();
            let mut app = app.clone();
            async move {
                let response = app.call(request).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_progress;
                        frame
                    }))
                }))
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Both: the buffer bound alone stops only a head still incomplete when the buffer fills,
        // and a whole head read at once may be up to twice it (the buffer over-allocates).
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let tick = (limits.idle_timeout.min(limits.send_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stopped| *stopped), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticks.tick() => {
                if activity.is_stalled_for(limits.send_timeout) {
                    // Nothing was read of what waits to be written: no graceful end is possible
                    // (it would wait on that write). Dropping the connection closes it.
                    stalled.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("closing an HTTP connection whose peer stopped reading");
                    return;
                }
                if activity.is_idle_for(limits.idle_timeout) {
                    // Closes at once: no request is in progress.
                    connection.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str) -> Option<IpAddr> {
        peer_key(addr.parse().expect("an address"))
    }

    #[test]
    fn a_peer_is_its_ipv4_address_or_its_ipv6_64_and_loopback_is_not_counted() {
        assert_eq!(key("192.0.2.7"), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(key("::ffff:192.0.2.7"), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            Some("2001:db8:1:2::".parse().unwrap())
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("127.0.0.1"), None);
        assert_eq!(key("127.9.9.9"), None);
        assert_eq!(key("::1"), None);
        assert_eq!(key("::ffff:127.0.0.1"), None);
    }

    #[test]
    fn an_address_at_its_cap_is_refused_until_a_slot_is_given_back() {
        let peers = Peers::default();
        let far = Some("192.0.2.7".parse().unwrap());
        let first = peers.take(far, 2).expect("first");
        let _second = peers.take(far, 2).expect("second");
        assert!(peers.take(far, 2).is_none());
        assert!(peers.take(Some("192.0.2.8".parse().unwrap()), 2).is_some());
        let near = Some("127.0.0.1".parse().unwrap());
        let local: Vec<PeerSlot> = (0..5).filter_map(|_| peers.take(near, 2)).collect();
        assert_eq!(local.len(), 5);
        drop(first);
        assert!(peers.take(far, 2).is_some());
        drop(_second);
        assert!(
            peers.0.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}
