//! The ZAP handler (RFC 27): libzmq asks it about every CURVE handshake on the TCP endpoints.
//!
//! One small task owns a ROUTER bound to `inproc://zeromq.zap.01` in the daemon's context (bound
//! before any CURVE socket, so no handshake is ever decided without it). It answers `200` with
//! the client's z85 public key as the User-Id for an allowed key, `400` otherwise. The control
//! loop reads that User-Id from each request and looks the role up again, so a key revoked after
//! the handshake is refused at its next request.

use drover_zmq::Async;

use super::Auth;

/// Where libzmq sends ZAP requests (fixed by RFC 27).
pub(crate) const ENDPOINT: &str = "inproc://zeromq.zap.01";
/// The ZAP domain set on every CURVE socket.
pub(crate) const DOMAIN: &str = "drover";

/// Bind the handler's socket (call before binding any CURVE socket).
pub(crate) fn bind(context: &zmq::Context) -> Result<zmq::Socket, zmq::Error> {
    let socket = context.socket(zmq::ROUTER)?;
    socket.set_linger(0)?;
    socket.bind(ENDPOINT)?;
    Ok(socket)
}

/// Answer ZAP requests until the daemon's context ends or the task is aborted.
///
/// The socket is never given up while the daemon runs: if `inproc://zeromq.zap.01` had no
/// handler, libzmq 4.3 would accept every CURVE handshake (and let the client name its own
/// User-Id). A failed receive or send is logged and the loop goes on; an unanswered request
/// fails its handshake after `HANDSHAKE_IVL`, which is the safe way to fail.
pub(crate) async fn run(socket: Async, auth: Auth) {
    loop {
        let frames = match socket.recv().await {
            Ok(frames) => frames,
            Err(zmq::Error::ETERM) => return,
            Err(error) => {
                tracing::error!(%error, "ZAP handler: receiving a request; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let reply = answer(&auth, &frames);
        let reply: Vec<&[u8]> = reply.iter().map(Vec::as_slice).collect();
        if let Err(error) = socket.send(&reply).await {
            tracing::warn!(%error, "ZAP reply");
        }
    }
}

/// The reply to one request:
/// `[routing id, empty, "1.0", request id, domain, address, identity, mechanism, credentials...]`
/// → `[routing id, empty, "1.0", request id, status, text, user id, metadata]`.
fn answer(auth: &Auth, frames: &[zmq::Message]) -> Vec<Vec<u8>> {
    let frame = |i: usize| frames.get(i).map(|f| f.to_vec()).unwrap_or_default();
    let mut reply = vec![frame(0), Vec::new(), b"1.0".to_vec(), frame(3)];
    let mechanism = frame(7);
    let decision = match (frame(2).as_slice(), mechanism.as_slice(), frames.get(8)) {
        (b"1.0", b"CURVE", Some(key)) => match <[u8; 32]>::try_from(&key[..]) {
            Ok(key) => {
                let z85 = drover_zmq::key::encode(&key);
                auth.refresh(false);
                match auth.role_of(&z85) {
                    Some(_) => Ok(z85),
                    None => Err("this key is not allowed by that daemon"),
                }
            }
            Err(_) => Err("malformed CURVE key"),
        },
        (b"1.0", _, _) => Err("only CURVE is accepted on this endpoint"),
        _ => Err("unsupported ZAP version"),
    };
    match decision {
        Ok(user) => {
            reply.extend([
                b"200".to_vec(),
                b"OK".to_vec(),
                user.into_bytes(),
                Vec::new(),
            ]);
        }
        Err(text) => {
            tracing::info!(address = %String::from_utf8_lossy(&frame(5)), "{text}");
            reply.extend([
                b"400".to_vec(),
                text.as_bytes().to_vec(),
                Vec::new(),
                Vec::new(),
            ]);
        }
    }
    reply
}
