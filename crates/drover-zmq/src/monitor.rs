//! Waiting for a connecting socket's handshake, through a libzmq socket monitor.
//!
//! `zmq_connect` returns at once; whether a daemon listens, and whether it accepts our CURVE key,
//! is only known from the monitor's events. [`Handshake`] watches a socket from before it
//! connects and reports the first decisive event.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Async;

/// How a connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake succeeded: the peer accepted us (and our key).
    Ready,
    /// The peer's ZAP handler refused our credentials.
    Refused,
    /// The handshake failed on protocol grounds (wrong server key, not a ZMTP peer, a mechanism
    /// mismatch).
    Protocol,
    /// Nothing accepted the connection; libzmq keeps retrying.
    Unreachable,
}

/// A monitor attached to a socket before it connects.
#[derive(Debug)]
pub struct Handshake {
    events: Async,
}

impl Handshake {
    /// Attach a monitor to `socket` (call before `connect`).
    pub fn watch(context: &zmq::Context, socket: &zmq::Socket) -> Result<Handshake, zmq::Error> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = format!(
            "inproc://drover-monitor-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let wanted = zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw()
            | zmq::SocketEvent::CONNECT_RETRIED.to_raw()
            | zmq::SocketEvent::DISCONNECTED.to_raw();
        socket.monitor(&endpoint, i32::from(wanted))?;
        let events = context.socket(zmq::PAIR)?;
        events.set_linger(0)?;
        events.connect(&endpoint)?;
        Ok(Handshake {
            events: Async::new(events).map_err(|_| zmq::Error::EFAULT)?,
        })
    }

    /// The first decisive event.
    pub async fn outcome(&mut self) -> Result<Outcome, zmq::Error> {
        loop {
            let frames = self.events.recv().await?;
            let Some(head) = frames.first() else { continue };
            if head.len() < 2 {
                continue;
            }
            let event = u16::from_le_bytes([head[0], head[1]]);
            let outcome = match event {
                e if e == zmq::SocketEvent::HANDSHAKE_SUCCEEDED.to_raw() => Outcome::Ready,
                e if e == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH.to_raw() => Outcome::Refused,
                e if e == zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL.to_raw()
                    || e == zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL.to_raw() =>
                {
                    Outcome::Protocol
                }
                e if e == zmq::SocketEvent::CONNECT_RETRIED.to_raw() => Outcome::Unreachable,
                _ => continue,
            };
            return Ok(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_and_a_good_one_are_told_apart() {
        let context = crate::context();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("tcp://{}", listener.local_addr().unwrap());
        drop(listener);
        let socket = context.socket(zmq::DEALER).unwrap();
        let mut handshake = Handshake::watch(&context, &socket).unwrap();
        socket.connect(&closed).unwrap();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), handshake.outcome());
        assert_eq!(outcome.await.unwrap().unwrap(), Outcome::Unreachable);

        let server = context.socket(zmq::ROUTER).unwrap();
        server.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = server.get_last_endpoint().unwrap().unwrap();
        let socket = context.socket(zmq::DEALER).unwrap();
        let mut handshake = Handshake::watch(&context, &socket).unwrap();
        socket.connect(&endpoint).unwrap();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), handshake.outcome());
        assert_eq!(outcome.await.unwrap().unwrap(), Outcome::Ready);
    }
}
