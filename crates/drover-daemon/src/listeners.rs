//! Binding every socket before serving, so the ready line names real addresses.
//!
//! Which endpoint asks for what: a `tcp://` endpoint (control or PUB, loopback included) is a
//! CURVE server whose handshakes the ZAP handler decides; the `ipc://` sockets in the 0700 state
//! directory use the NULL mechanism and are trusted by file permission. The mechanism is a
//! property of a socket, so the ipc endpoints are sockets of their own.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::auth::{self, Auth, ServerKeys};
use crate::caller::Via;
use crate::lock::{self, StateLock};
use crate::{Config, DaemonError};

/// How far over `max_frame` a control message may go and still be answered with `too_large`.
const CONTROL_SLACK: usize = 1024 * 1024;
/// Replies libzmq queues per control client before the control loop keeps them itself.
pub(crate) const REPLY_HWM: i32 = 64;
/// Largest message a PUB peer may send (subscriptions are a topic prefix).
const PUB_PEER_LIMIT: i64 = 64 * 1024;
/// A TCP connection that has not finished its (CURVE) handshake by then is dropped.
pub(crate) const HANDSHAKE_IVL_MS: i32 = 5_000;
/// ZMTP heartbeats: a PING this often, and a peer silent this long is disconnected.
const HEARTBEAT_IVL_MS: i32 = 10_000;
const HEARTBEAT_TIMEOUT_MS: i32 = 30_000;
/// TCP keepalive: first probe after this idle time (seconds), then every interval, this many.
const KEEPALIVE_IDLE_S: i32 = 60;
const KEEPALIVE_INTVL_S: i32 = 10;
const KEEPALIVE_CNT: i32 = 6;

/// The addresses the daemon actually bound (ports resolved, never a wildcard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    /// Control ROUTER, e.g. `tcp://127.0.0.1:7710`.
    pub control: String,
    /// PUB, e.g. `tcp://127.0.0.1:7711`.
    pub publish: String,
    /// HTTP base URL, e.g. `http://127.0.0.1:7712`.
    pub http: String,
    /// The ipc control endpoint, when bound.
    pub ipc: Option<String>,
    /// The HTTP unix socket's path, when bound.
    pub http_unix: Option<String>,
    /// The HTTP certificate's fingerprint (`sha256:AB:...`), when HTTP is TLS.
    pub tls: Option<String>,
    /// The ipc PUB endpoint, when bound.
    pub pub_ipc: Option<String>,
    /// The server's CURVE public key (z85), which TCP clients set as `curve_serverkey`.
    pub server_key: String,
}

impl Addresses {
    /// The one machine-readable line printed once everything is bound.
    pub fn ready_line(&self) -> String {
        let mut line = format!(
            "drover ready control={} pub={} http={}",
            self.control, self.publish, self.http
        );
        if let Some(ipc) = &self.ipc {
            line.push_str(" ipc=");
            line.push_str(ipc);
        }
        if let Some(ipc) = &self.pub_ipc {
            line.push_str(" pub_ipc=");
            line.push_str(ipc);
        }
        if let Some(path) = &self.http_unix {
            line.push_str(" http_unix=");
            line.push_str(path);
        }
        if let Some(fingerprint) = &self.tls {
            line.push_str(" tls=");
            line.push_str(fingerprint);
        }
        line
    }
}

/// Bound sockets, ready for [`crate::run`].
pub struct Listeners {
    pub(crate) context: zmq::Context,
    pub(crate) zap: drover_zmq::Async,
    pub(crate) auth: Auth,
    /// Control ROUTERs and what their callers are.
    pub(crate) control: Vec<(zmq::Socket, Via)>,
    /// PUB sockets (TCP first), each of which gets every message.
    pub(crate) publish: Vec<(zmq::Socket, Via)>,
    pub(crate) http: crate::http::listen::HttpListeners,
    pub(crate) lock: StateLock,
    /// The store, opened and recovered before the ready line.
    pub(crate) store: drover_store::Store,
    /// Where they are.
    pub addresses: Addresses,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// Whether an endpoint is one trusted by file permission (ipc) rather than by key (tcp).
pub(crate) fn via(endpoint: &str) -> Via {
    if endpoint.starts_with("ipc://") {
        Via::Ipc
    } else {
        Via::Tcp
    }
}

/// Validate the binds, take the state directory, and bind every socket.
pub async fn bind(config: &Config) -> Result<Listeners, DaemonError> {
    config.validate()?;
    let lock = lock::prepare(&config.state_dir)?;
    let keys = ServerKeys::load_or_create(&config.state_dir)?;
    let auth = Auth::open(&config.state_dir)?;
    // Open (and recover) the store before binding, so "ready" means ready.
    let store = drover_store::Store::open(&config.state_dir, config.store.clone())?;
    let context = zmq::Context::new();
    // The ZAP handler's socket comes first: a CURVE socket with no handler would let every
    // client in.
    let zap =
        auth::zap::bind(&context).map_err(zmq_error("the ZAP handler", auth::zap::ENDPOINT))?;
    // Registered now, so a failure is a start-up error: a handler that never ran would leave
    // libzmq deciding CURVE handshakes without it.
    let zap = drover_zmq::Async::new(zap).map_err(|source| DaemonError::Io {
        context: "registering the ZAP handler's socket".into(),
        source,
    })?;
    let secret = drover_zmq::key::decode(keys.secret()).map_err(|e| DaemonError::Config {
        reason: format!("the server's secret key: {e}"),
    })?;
    let make =
        |kind: zmq::SocketType, endpoint: &str| -> Result<(zmq::Socket, String), DaemonError> {
            let fail = zmq_error("a socket", endpoint);
            let socket = context.socket(kind).map_err(&fail)?;
            socket.set_linger(0).map_err(&fail)?;
            socket.set_heartbeat_ivl(HEARTBEAT_IVL_MS).map_err(&fail)?;
            socket
                .set_heartbeat_timeout(HEARTBEAT_TIMEOUT_MS)
                .map_err(&fail)?;
            if via(endpoint) == Via::Tcp {
                socket.set_handshake_ivl(HANDSHAKE_IVL_MS).map_err(&fail)?;
                socket.set_tcp_keepalive(1).map_err(&fail)?;
                socket
                    .set_tcp_keepalive_idle(KEEPALIVE_IDLE_S)
                    .map_err(&fail)?;
                socket
                    .set_tcp_keepalive_intvl(KEEPALIVE_INTVL_S)
                    .map_err(&fail)?;
                socket.set_tcp_keepalive_cnt(KEEPALIVE_CNT).map_err(&fail)?;
                socket.set_zap_domain(auth::zap::DOMAIN).map_err(&fail)?;
                socket.set_curve_server(true).map_err(&fail)?;
                socket.set_curve_secretkey(&secret).map_err(&fail)?;
            }
            match kind {
                zmq::ROUTER => {
                    // Frames somewhat over `max_frame` are still read and answered with
                    // `too_large`; anything larger closes the sender's connection unread.
                    let limit = config.max_frame.saturating_add(CONTROL_SLACK);
                    socket
                        .set_maxmsgsize(i64::try_from(limit).unwrap_or(i64::MAX))
                        .map_err(&fail)?;
                    socket.set_sndhwm(REPLY_HWM).map_err(&fail)?;
                    // A reply to a peer that is gone fails (EHOSTUNREACH) instead of vanishing, and
                    // a full peer queue says EAGAIN, so the control loop can keep it.
                    socket.set_router_mandatory(true).map_err(&fail)?;
                }
                _ => {
                    socket.set_maxmsgsize(PUB_PEER_LIMIT).map_err(&fail)?;
                    let hwm = i32::try_from(config.pub_subscriber_queue).unwrap_or(i32::MAX);
                    socket.set_sndhwm(hwm).map_err(&fail)?;
                }
            }
            socket.bind(endpoint).map_err(|e| DaemonError::Bind {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?;
            let bound = socket
                .get_last_endpoint()
                .map_err(&fail)?
                .unwrap_or_else(|_| endpoint.to_owned());
            Ok((socket, bound))
        };
    let (control_tcp, control_endpoint) = make(zmq::ROUTER, &config.control)?;
    let mut control = vec![(control_tcp, via(&config.control))];
    // XPUB: the publisher learns what is subscribed (see publish/mod.rs).
    let (pub_tcp, publish_endpoint) = make(zmq::XPUB, &config.publish)?;
    let mut publish = vec![(pub_tcp, via(&config.publish))];
    let (mut ipc, mut pub_ipc) = (None, None);
    if config.ipc {
        for (name, kind) in [("control.sock", zmq::ROUTER), ("pub.sock", zmq::XPUB)] {
            let path = config.state_dir.join(name);
            remove_stale_socket(&path)?;
            let (socket, endpoint) = make(kind, &format!("ipc://{}", path.display()))?;
            // Under the 0700 state directory already; the socket itself is the user's alone too
            // (libzmq makes it under the umask), like `http.sock`.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| DaemonError::Io {
                    context: format!("securing {}", path.display()),
                    source,
                },
            )?;
            if kind == zmq::ROUTER {
                control.push((socket, Via::Ipc));
                ipc = Some(endpoint);
            } else {
                publish.push((socket, Via::Ipc));
                pub_ipc = Some(endpoint);
            }
        }
    }
    let (http, http_addresses) = crate::http::listen::bind(config).await?;
    Ok(Listeners {
        context,
        zap,
        auth,
        control,
        publish,
        http,
        lock,
        store,
        addresses: Addresses {
            control: control_endpoint,
            publish: publish_endpoint,
            http: http_addresses.url,
            ipc,
            pub_ipc,
            http_unix: http_addresses.unix,
            tls: http_addresses.tls,
            server_key: keys.public().to_owned(),
        },
    })
}

fn zmq_error<'a>(what: &'a str, endpoint: &'a str) -> impl Fn(zmq::Error) -> DaemonError + 'a {
    move |e| DaemonError::Bind {
        endpoint: endpoint.to_owned(),
        reason: format!("setting up {what}: {e}"),
    }
}

/// Remove an ipc socket file left by a daemon that died, but never one a live daemon listens
/// on (the state lock already excludes that, and connecting proves it).
fn remove_stale_socket(path: &Path) -> Result<(), DaemonError> {
    if !path.exists() {
        return Ok(());
    }
    if UnixStream::connect(path).is_ok() {
        return Err(DaemonError::Config {
            reason: format!("{} is in use by another process", path.display()),
        });
    }
    std::fs::remove_file(path).map_err(|source| DaemonError::Io {
        context: format!("removing stale socket {}", path.display()),
        source,
    })
}
