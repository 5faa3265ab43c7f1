//! Trust on the ZeroMQ side: CURVE keys and roles on TCP, file permission on ipc, handshakes
//! that fail fast and clearly, and the key file re-read without a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use drover_client::follow::Selection;
use drover_client::{Client, ClientError, ClientOptions, CurveKeys, FollowEvent, FollowOptions};
use drover_daemon::auth::{self, AllowedKeys};
use drover_proto::op::{AgentRef, ReadLogsArgs};
use drover_proto::{ErrorCode, Role};

fn map(entries: Vec<(&str, rmpv::Value)>) -> Vec<u8> {
    let value = rmpv::Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (rmpv::Value::from(k), v))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).unwrap();
    out
}

fn field<'a>(reply: &'a rmpv::Value, name: &str) -> Option<&'a rmpv::Value> {
    reply
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// A client of `daemon` with a fresh key allowed with `role`.
async fn client_with_role(daemon: &TestDaemon, role: Role) -> (Client, CurveKeys) {
    let keys = CurveKeys::generate().unwrap();
    auth::allow_key(&daemon.state_dir, &keys.public, role, "test").unwrap();
    let options = ClientOptions {
        curve: Some(daemon.curve(&keys)),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&daemon.addresses.control, options)
        .await
        .unwrap();
    (client, keys)
}

/// Follow `agent` on `client` until it exits: every record's seq, in order. `after_batch` is
/// told how many records have come so far, after each batch.
async fn follow_seqs(
    client: &Client,
    agent: String,
    mut after_batch: impl FnMut(usize),
) -> Vec<u64> {
    let mut follower = client
        .follow(
            Selection::Agents(vec![agent]),
            FollowOptions {
                until_exit: true,
                ..FollowOptions::default()
            },
        )
        .await
        .unwrap();
    let mut seqs = Vec::new();
    while let Some(event) = follower.next().await.unwrap() {
        if let FollowEvent::Records { records, .. } = event {
            seqs.extend(records.iter().map(|r| r.seq.0));
            after_batch(seqs.len());
        }
    }
    seqs
}

#[test]
fn libzmq_has_curve() {
    assert_eq!(zmq::has("curve"), Some(true));
}

#[tokio::test]
async fn a_read_key_reads_and_follows_but_cannot_spawn() {
    within(async {
        let daemon = TestDaemon::start().await;
        let control = daemon.client().await;
        let agent = control.spawn(sh("seq 1 500")).await.unwrap();
        let id = agent.id.to_string();
        let (reader, _) = client_with_role(&daemon, Role::Read).await;
        assert_eq!(
            code(reader.spawn(sh("true")).await),
            ErrorCode::Unauthorized
        );
        assert_eq!(code(reader.kill(&id).await), ErrorCode::Unauthorized);
        reader.health().await.unwrap();
        // Follows over the CURVE PUB socket: exactly 1..=500.
        let seqs = follow_seqs(&reader, id.clone(), |_| {}).await;
        assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
        let read = reader
            .read_logs(ReadLogsArgs::new(AgentRef::new(id)))
            .await
            .unwrap();
        assert_eq!(read.records.len(), 500);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_read_key_sees_environment_names_but_not_their_values() {
    within(async {
        let daemon = TestDaemon::start().await;
        let control = daemon.client().await;
        let mut spec = sh("sleep 100");
        spec.env.insert("API_KEY".into(), "sk-secret-123".into());
        let agent = control.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        assert_eq!(
            agent.spec.env["API_KEY"], "sk-secret-123",
            "control sees it"
        );
        let (reader, _) = client_with_role(&daemon, Role::Read).await;
        // By full id (answered from memory), by prefix (from the registry), in a list with
        // specs, and in a batch.
        let by_id = reader.get(&id).await.unwrap();
        let by_prefix = reader.get(&id[..8]).await.unwrap();
        let listed = reader
            .list(drover_proto::op::ListArgs {
                specs: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let batched = reader
            .batch(drover_proto::op::BatchArgs {
                op: drover_proto::Op::Get,
                agents: vec![AgentRef::new(id.clone())],
                args: Default::default(),
                fail_fast: false,
            })
            .await
            .unwrap();
        let batched = batched.results[0].info.clone().expect("batch get");
        for env in [
            &by_id.spec.env,
            &by_prefix.spec.env,
            &listed[0].spec.env,
            &batched.spec.env,
        ] {
            assert_eq!(env.len(), 1);
            assert_eq!(env["API_KEY"], "<redacted>");
        }
        assert_eq!(
            control.get(&id).await.unwrap().spec.env["API_KEY"],
            "sk-secret-123"
        );
        control.kill(&id).await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_unknown_key_is_refused_at_the_handshake_within_two_seconds() {
    within(async {
        let daemon = TestDaemon::start().await;
        let stranger = CurveKeys::generate().unwrap();
        let options = ClientOptions {
            curve: Some(daemon.curve(&stranger)),
            ..ClientOptions::default()
        };
        let started = Instant::now();
        let error = Client::connect_with(&daemon.addresses.control, options)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(error, ClientError::Refused { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("this key is not allowed by that daemon"),
            "{error}"
        );
        // No key at all on TCP: refused too, with its own message.
        let error = Client::connect(&daemon.addresses.control)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Handshake { .. }), "{error:?}");
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn nothing_listening_is_reported_as_no_daemon_at_once() {
    within(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        drop(listener);
        let started = Instant::now();
        let error = Client::connect(&endpoint).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(error, ClientError::NoDaemon { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .contains(&format!("no daemon at {endpoint}")),
            "{error}"
        );
    })
    .await
}

#[tokio::test]
async fn a_key_removed_from_the_file_is_refused_without_a_restart() {
    within(async {
        let daemon = TestDaemon::start().await;
        let (client, keys) = client_with_role(&daemon, Role::Control).await;
        client.health().await.unwrap();
        // Edit the file by hand: keep every line but this key's.
        let path = auth::allowed_keys_path(&daemon.state_dir);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text
            .lines()
            .filter(|line| !line.starts_with(&keys.public))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
        // The open connection's next request is refused...
        assert_eq!(code(client.health().await), ErrorCode::Unauthorized);
        // ...and a new connection with that key is refused at the handshake.
        let options = ClientOptions {
            curve: Some(daemon.curve(&keys)),
            ..ClientOptions::default()
        };
        let error = Client::connect_with(&daemon.addresses.control, options)
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Refused { .. }), "{error:?}");
        // Others are unaffected.
        daemon.client().await.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_key_file_that_cannot_be_read_admits_nobody_until_it_can() {
    within(async {
        let daemon = TestDaemon::start().await;
        let (client, _) = client_with_role(&daemon, Role::Control).await;
        client.health().await.unwrap();
        // Not a file any more (the tests run as root, which reads any mode): reading fails.
        let path = auth::allowed_keys_path(&daemon.state_dir);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(code(client.health().await), ErrorCode::Unauthorized);
        // Readable again: the same connection is served.
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, saved).unwrap();
        client.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

/// A raw libzmq SUB on the daemon's TCP PUB with `keys`, subscribed to heartbeats, and a
/// monitor of its handshakes.
fn heartbeat_subscriber(
    daemon: &TestDaemon,
    keys: &CurveKeys,
) -> (drover_zmq::Async, drover_zmq::monitor::Handshake) {
    let key = |z85: &str| drover_zmq::key::decode(z85).unwrap();
    let context = drover_zmq::context();
    let socket = context.socket(zmq::SUB).unwrap();
    socket.set_linger(0).unwrap();
    socket
        .set_curve_serverkey(&key(&daemon.addresses.server_key))
        .unwrap();
    socket.set_curve_publickey(&key(&keys.public)).unwrap();
    socket.set_curve_secretkey(&key(&keys.secret)).unwrap();
    socket
        .set_subscribe(drover_proto::topic::HEARTBEAT.as_bytes())
        .unwrap();
    let handshake = drover_zmq::monitor::Handshake::watch(&context, &socket).unwrap();
    socket.connect(&daemon.addresses.publish).unwrap();
    (drover_zmq::Async::new(socket).unwrap(), handshake)
}

#[tokio::test]
async fn a_revoked_key_loses_its_subscription_and_an_allowed_one_reconnects() {
    use drover_zmq::monitor::Outcome;
    within(async {
        let daemon = TestDaemon::start().await;
        let kept = CurveKeys::generate().unwrap();
        let gone = CurveKeys::generate().unwrap();
        auth::allow_key(&daemon.state_dir, &kept.public, Role::Read, "kept").unwrap();
        auth::allow_key(&daemon.state_dir, &gone.public, Role::Read, "gone").unwrap();
        let (kept_sub, mut kept_handshakes) = heartbeat_subscriber(&daemon, &kept);
        let (gone_sub, mut gone_handshakes) = heartbeat_subscriber(&daemon, &gone);
        assert_eq!(kept_handshakes.outcome().await.unwrap(), Outcome::Ready);
        assert_eq!(gone_handshakes.outcome().await.unwrap(), Outcome::Ready);
        // Both receive (heartbeats come every second).
        kept_sub.recv().await.unwrap();
        gone_sub.recv().await.unwrap();

        // No request is made on the control socket: the daemon notices the file by itself.
        assert_eq!(auth::revoke_key(&daemon.state_dir, "gone").unwrap(), 1);
        // The revoked key's connection is ended, and its reconnection refused at the handshake
        // (a reconnection that came while the endpoint was being bound again is retried).
        let mut settled = Vec::new();
        for handshakes in [&mut gone_handshakes, &mut kept_handshakes] {
            let outcome = loop {
                match handshakes.outcome().await.unwrap() {
                    Outcome::Unreachable => continue,
                    outcome => break outcome,
                }
            };
            settled.push(outcome);
        }
        assert_eq!(settled, [Outcome::Refused, Outcome::Ready]);
        while kept_sub.try_recv().is_ok() {}
        kept_sub.recv().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_follower_whose_key_stays_allowed_loses_nothing_when_another_is_revoked() {
    within(async {
        let daemon = TestDaemon::start().await;
        let control = daemon.client().await;
        let (reader, _) = client_with_role(&daemon, Role::Read).await;
        let doomed = CurveKeys::generate().unwrap();
        auth::allow_key(&daemon.state_dir, &doomed.public, Role::Read, "doomed").unwrap();
        let agent = control
            .spawn(sh(
                "for i in $(seq 1 400); do echo line $i; sleep 0.005; done",
            ))
            .await
            .unwrap();
        let mut revoked = false;
        let seqs = follow_seqs(&reader, agent.id.to_string(), |received| {
            // Midway, a revocation ends every TCP PUB connection, this follower's included.
            if !revoked && received >= 50 {
                assert_eq!(auth::revoke_key(&daemon.state_dir, "doomed").unwrap(), 1);
                revoked = true;
            }
        })
        .await;
        assert!(revoked);
        assert_eq!(seqs, (1..=400).collect::<Vec<u64>>(), "exactly 1..=400");
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_malformed_key_file_keeps_the_previous_set_and_names_the_line() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let path = auth::allowed_keys_path(&daemon.state_dir);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("# a comment\nnot-a-key control oops\n");
        let bad_line = text.lines().count();
        // Replaced whole (as `drover auth` and editors that save by rename do): written in
        // place, the daemon could read it half-written, e.g. empty, which is a valid set of
        // no keys, and keep that as the previous set.
        let next = path.with_extension("next");
        std::fs::write(&next, &text).unwrap();
        std::fs::rename(&next, &path).unwrap();
        let error = AllowedKeys::read(&path).unwrap_err();
        assert_eq!(error.line(), Some(bad_line), "{error}");
        assert!(
            error.to_string().contains(&format!("line {bad_line}")),
            "{error}"
        );
        // The harness key (from the previous set) still works, on this and new connections.
        client.health().await.unwrap();
        daemon.client().await.spawn(sh("true")).await.unwrap();
        // A wrong-length key is refused by the API before it reaches the file.
        let short = &daemon.keys.public[..39];
        let error = auth::allow_key(&daemon.state_dir, short, Role::Read, "x").unwrap_err();
        assert!(error.to_string().contains("has 39"), "{error}");
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_ipc_sockets_need_no_key_and_stream_info_names_the_ipc_pub() {
    within(async {
        let daemon = TestDaemon::start_with(|config| config.ipc = true).await;
        let ipc = daemon.addresses.ipc.clone().unwrap();
        let pub_ipc = daemon.addresses.pub_ipc.clone().unwrap();
        assert!(daemon
            .addresses
            .ready_line()
            .contains(&format!(" pub_ipc={pub_ipc}")));
        let local = Client::connect(&ipc).await.unwrap();
        let agent = local.spawn(sh("seq 1 300")).await.unwrap();
        assert_eq!(local.stream_info(None).await.unwrap().pub_endpoint, pub_ipc);
        let remote = daemon.client().await;
        assert_eq!(
            remote.stream_info(None).await.unwrap().pub_endpoint,
            daemon.addresses.publish
        );
        let seqs = follow_seqs(&local, agent.id.to_string(), |_| {}).await;
        assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn the_ready_line_names_the_real_port_for_localhost_zero() {
    within(async {
        let daemon = TestDaemon::start_with(|config| {
            config.control = "tcp://localhost:0".into();
        })
        .await;
        let control = &daemon.addresses.control;
        assert!(!control.ends_with(":0"), "{control}");
        assert!(control.starts_with("tcp://127.0.0.1:"), "{control}");
        daemon.client().await.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_that_keeps_64_in_flight_is_never_refused() {
    within(async {
        let daemon = TestDaemon::start().await;
        let mut socket = daemon.raw(zmq::DEALER, &daemon.addresses.control);
        let total = 5_000u64;
        let (mut sent, mut received) = (0u64, 0u64);
        while received < total {
            while sent < total && sent - received < 64 {
                let body = map(vec![
                    ("v", 1.into()),
                    ("id", sent.into()),
                    ("op", "health".into()),
                ]);
                socket.send(vec![body]).await;
                sent += 1;
            }
            let frames = socket.recv().await;
            let reply = rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap();
            assert_eq!(
                field(&reply, "ok").and_then(|v| v.as_bool()),
                Some(true),
                "{reply}"
            );
            received += 1;
        }
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn replies_wait_for_a_client_that_reads_late_and_none_is_lost() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        // Replies of about 1 MiB each, many more than libzmq queues for one client.
        let agent = client.spawn(sh("seq -f '%0127g' 1 20000")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        let before = client.stats().await.unwrap();
        let mut slow = daemon.raw(zmq::DEALER, &daemon.addresses.control);
        for i in 0..64u64 {
            let body = map(vec![
                ("v", 1.into()),
                ("id", i.into()),
                ("op", "read_logs".into()),
                ("agent", agent.id.to_string().into()),
                ("limit", 10_000.into()),
            ]);
            slow.send(vec![body]).await;
        }
        // Wait until the daemon has answered all 64 without this client reading any.
        wait_for("all 64 reads answered", || async {
            let stats = client.stats().await.unwrap();
            let served = stats.requests.get("read_logs").copied().unwrap_or(0)
                - before.requests.get("read_logs").copied().unwrap_or(0);
            (served >= 64).then_some(())
        })
        .await;
        let mut ids = Vec::new();
        for _ in 0..64 {
            let frames = slow.recv().await;
            let reply = rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap();
            assert_eq!(field(&reply, "ok").and_then(|v| v.as_bool()), Some(true));
            ids.push(field(&reply, "id").and_then(|v| v.as_u64()).unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..64).collect::<Vec<u64>>());
        assert_eq!(client.stats().await.unwrap().replies_dropped, 0);
        daemon.shutdown().await;
    })
    .await
}

/// Every path under `dir` that anyone but its owner may read, write or enter, with its mode.
fn open_to_others(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // removed while we looked (a segment packed, a spool cut)
        };
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            found.push((path.clone(), mode));
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn nothing_the_daemon_keeps_in_its_state_dir_is_open_to_other_users() {
    within(async {
        let daemon = TestDaemon::start_with(|config| {
            config.ipc = true;
            config.http_unix = true;
        })
        .await;
        drover_daemon::token::create(&daemon.state_dir, Role::Read, "a token").unwrap();
        let client = daemon.client().await;
        let mut spec = sh("seq 1 2000; echo the end");
        spec.env.insert("AN_API_KEY".into(), "secret".into());
        let done = client.spawn(spec).await.unwrap();
        client
            .wait(&done.id.to_string(), Some(TIMEOUT))
            .await
            .unwrap();
        let running = client.spawn(sh("echo ready; exec sleep 60")).await.unwrap();
        wait_ready(&client, &running).await;
        assert_eq!(open_to_others(&daemon.state_dir), Vec::new());
        client.kill(&running.id.to_string()).await.unwrap();
        daemon.shutdown().await;
    })
    .await
}
