//! Binding every socket before serving, so the ready line names real addresses.

use std::os::unix::net::UnixStream;
use std::path::Path;

use zeromq::{PubSocket, RouterSocket, Socket, SocketOptions};

use crate::lock::{self, StateLock};
use crate::{Config, DaemonError};

/// How far over `max_frame` a control message may go and still be answered with `too_large`.
const CONTROL_SLACK: usize = 1024 * 1024;
/// Replies queued per control client (each at most about `max_frame`).
const REPLY_QUEUE: usize = 16;
/// Largest message a PUB peer may send (subscriptions are a topic prefix).
const PUB_PEER_LIMIT: usize = 64 * 1024;

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
    pub(crate) control: RouterSocket,
    pub(crate) publish: PubSocket,
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

/// Validate the binds, take the state directory, and bind every socket.
pub async fn bind(config: &Config) -> Result<Listeners, DaemonError> {
    config.validate()?;
    let lock = lock::prepare(&config.state_dir)?;
    // Open (and recover) the store before binding, so "ready" means ready.
    let store = drover_store::Store::open(&config.state_dir, config.store.clone())?;
    let bind_error = |endpoint: &str| {
        let endpoint = endpoint.to_owned();
        move |e: zeromq::ZmqError| DaemonError::Bind {
            endpoint,
            reason: e.to_string(),
        }
    };
    // Frames somewhat over `max_frame` are still read and answered with `too_large`; anything
    // larger closes the sender's connection before memory is reserved for it.
    let mut control_options = SocketOptions::default();
    control_options.max_message_size(config.max_frame.saturating_add(CONTROL_SLACK));
    // Replies queued for one client that does not read them: beyond this a reply is dropped
    // after a short wait (see `control::deliver`), so such a client costs a bounded amount.
    control_options.send_queue_capacity(REPLY_QUEUE);
    let mut control = RouterSocket::with_options(control_options);
    let control_endpoint = control
        .bind(&config.control)
        .await
        .map_err(bind_error(&config.control))?;
    let ipc = if config.ipc {
        let path = config.state_dir.join("control.sock");
        remove_stale_socket(&path)?;
        let endpoint = format!("ipc://{}", path.display());
        control
            .bind(&endpoint)
            .await
            .map_err(bind_error(&endpoint))?;
        Some(endpoint)
    } else {
        None
    };
    // PUB peers only ever send subscriptions.
    let mut publish_options = SocketOptions::default();
    publish_options.max_message_size(PUB_PEER_LIMIT);
    publish_options.send_queue_capacity(config.pub_subscriber_queue);
    let mut publish = PubSocket::with_options(publish_options);
    let publish_endpoint = publish
        .bind(&config.publish)
        .await
        .map_err(bind_error(&config.publish))?;
    let (http, http_addresses) = crate::http::listen::bind(config).await?;
    Ok(Listeners {
        control,
        publish,
        http,
        lock,
        store,
        addresses: Addresses {
            control: control_endpoint.to_string(),
            publish: publish_endpoint.to_string(),
            http: http_addresses.url,
            ipc,
            http_unix: http_addresses.unix,
            tls: http_addresses.tls,
        },
    })
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
