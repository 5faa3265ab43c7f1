//! The ipc socket and restarts: a stale socket file is replaced, and a client survives a daemon
//! restart by reconnecting with a fresh socket.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use drover_client::{Client, ClientOptions};

#[tokio::test]
async fn a_stale_ipc_socket_is_replaced_and_the_ipc_endpoint_serves() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        // A socket file left behind by a dead daemon: bound, then its listener dropped.
        let stale = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let daemon =
            TestDaemon::start_in(dir.path().to_path_buf(), |config| config.ipc = true).await;
        let ipc = daemon.addresses.ipc.clone().expect("an ipc endpoint");
        assert_eq!(ipc, format!("ipc://{}", stale.display()));
        let client = Client::connect(&ipc).await.unwrap();
        assert_eq!(client.health().await.unwrap().protocol, 1);
        let mode = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o700,
            "the state directory is private"
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_reconnects_after_the_daemon_restarts() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |_| {}).await;
        let endpoint = daemon.addresses.control.clone();
        let options = ClientOptions {
            request_timeout: Duration::from_millis(500),
            ..daemon.options()
        };
        let client = Client::connect_with(&endpoint, options).await.unwrap();
        let before = client.health().await.unwrap().daemon;
        daemon.shutdown().await;

        // Same state directory, same control endpoint.
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |config| {
            config.control = endpoint.clone();
        })
        .await;
        let after = wait_for("the client to reach the new daemon", || async {
            client.health().await.ok().map(|h| h.daemon)
        })
        .await;
        assert_ne!(before, after, "a new daemon run answers");
        daemon.shutdown().await;
    })
    .await
}
