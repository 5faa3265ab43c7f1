//! `drover-zmq`: libzmq sockets driven by tokio, shared by the daemon and the client.
//!
//! libzmq does its I/O on its own threads; a socket exposes a file descriptor (`ZMQ_FD`) that
//! becomes readable whenever the socket's state *may* have changed, edge-triggered. [`Async`]
//! registers that descriptor with tokio (`AsyncFd`), always tries an operation with `DONTWAIT`
//! first, and only on `EAGAIN` awaits the descriptor, re-reading `ZMQ_EVENTS` and clearing
//! tokio's readiness only when the wanted event is absent. So a tokio worker never blocks in
//! libzmq and no wake-up is lost. [`monitor`] waits for a connection's CURVE handshake, and
//! [`key`] checks z85 keys.

pub mod key;
pub mod monitor;
mod socket;

pub use socket::{again, send_frames, Async, Fd};

/// A process-wide libzmq context for clients. (A daemon makes its own: its sockets and the ZAP
/// handler they consult over `inproc` share a context, and the ZAP endpoint is per context.)
pub fn context() -> zmq::Context {
    static CONTEXT: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new).clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn libzmq_is_built_with_curve() {
        assert_eq!(zmq::has("curve"), Some(true));
        assert_eq!(zmq::version().0, 4);
        assert!(zmq::version() >= (4, 3, 5));
    }
}
