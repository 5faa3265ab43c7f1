//! Raw frames on the control socket: framing shapes and hostile input get typed errors, and the
//! daemon keeps serving everyone else.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

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

fn field<'a>(reply: &'a rmpv::Value, name: &str) -> &'a rmpv::Value {
    reply
        .as_map()
        .expect("reply is a map")
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("reply lacks {name}: {reply}"))
}

fn error_code(reply: &rmpv::Value) -> String {
    assert_eq!(field(reply, "ok").as_bool(), Some(false), "{reply}");
    field(field(reply, "error"), "code")
        .as_str()
        .unwrap()
        .to_owned()
}

async fn dealer(daemon: &TestDaemon) -> Raw {
    daemon.raw(zmq::DEALER, &daemon.addresses.control)
}

async fn ask(socket: &mut Raw, frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    socket.send(frames).await;
    socket.recv().await
}

async fn ask_body(socket: &mut Raw, body: Vec<u8>) -> rmpv::Value {
    let frames = ask(socket, vec![body]).await;
    assert_eq!(frames.len(), 1, "DEALER replies are [body]");
    rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap()
}

#[tokio::test]
async fn dealer_and_req_framing_both_work() {
    within(async {
        let daemon = TestDaemon::start().await;
        let mut socket = dealer(&daemon).await;
        let reply = ask_body(
            &mut socket,
            map(vec![
                ("v", 1.into()),
                ("id", "abc".into()),
                ("op", "health".into()),
                ("unknown_field", 42.into()),
            ]),
        )
        .await;
        assert_eq!(field(&reply, "v").as_u64(), Some(1));
        assert_eq!(field(&reply, "id").as_str(), Some("abc"));
        assert_eq!(field(&reply, "ok").as_bool(), Some(true));
        assert_eq!(field(&reply, "protocol").as_u64(), Some(1));

        let mut req = daemon.raw(zmq::REQ, &daemon.addresses.control);
        req.send(vec![map(vec![
            ("v", 1.into()),
            ("id", 7.into()),
            ("op", "list".into()),
        ])])
        .await;
        let frames = req.recv().await;
        let reply = rmpv::decode::read_value(&mut frames.last().unwrap().as_slice()).unwrap();
        assert_eq!(field(&reply, "id").as_u64(), Some(7));
        assert!(field(&reply, "agents").as_array().unwrap().is_empty());
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn hostile_input_gets_typed_errors_and_nothing_else() {
    within(async {
        let daemon = TestDaemon::start_with(|config| config.max_frame = 64 * 1024).await;
        let mut socket = dealer(&daemon).await;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0xc1, 0xff, 0x00], "bad_request"),
            (b"not msgpack at all".to_vec(), "bad_request"),
            (map(vec![]), "unsupported_version"),
            (
                map(vec![("v", 2.into()), ("op", "health".into())]),
                "unsupported_version",
            ),
            (map(vec![("v", 1.into())]), "bad_request"),
            (
                map(vec![("v", 1.into()), ("op", "explode".into())]),
                "bad_request",
            ),
            (map(vec![("v", 1.into()), ("op", 5.into())]), "bad_request"),
            (
                map(vec![("v", 1.into()), ("op", "get".into())]),
                "bad_request",
            ),
            (
                map(vec![
                    ("v", 1.into()),
                    ("op", "get".into()),
                    ("agent", 12.into()),
                ]),
                "bad_request",
            ),
            (
                map(vec![
                    ("v", 1.into()),
                    ("op", "spawn".into()),
                    ("spec", "not a map".into()),
                ]),
                "bad_request",
            ),
            (
                map(vec![
                    ("v", 1.into()),
                    ("op", "get".into()),
                    ("agent", "0000".into()),
                ]),
                "not_found",
            ),
            (vec![0x92, 0x01, 0x02], "bad_request"),
            (vec![0u8; 100 * 1024], "too_large"),
        ];
        for (body, expected) in cases {
            let reply = ask_body(&mut socket, body).await;
            assert_eq!(error_code(&reply), expected, "{reply}");
        }
        // The id is echoed when it could be read.
        let reply = ask_body(
            &mut socket,
            map(vec![
                ("v", 1.into()),
                ("id", 99.into()),
                ("op", "nope".into()),
            ]),
        )
        .await;
        assert_eq!(field(&reply, "id").as_u64(), Some(99));
        // Odd framing: three frames is neither DEALER nor REQ.
        let frames = ask(
            &mut socket,
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
        )
        .await;
        let reply = rmpv::decode::read_value(&mut frames.last().unwrap().as_slice()).unwrap();
        assert_eq!(error_code(&reply), "bad_request");
        // Deeply nested input is refused without exhausting the stack.
        let mut nested = vec![0x91u8; 50_000];
        nested.push(0xc0);
        let reply = ask_body(&mut socket, nested).await;
        assert_eq!(error_code(&reply), "bad_request");

        // The daemon still serves this client and others.
        let client = daemon.client().await;
        client.health().await.unwrap();
        let reply = ask_body(
            &mut socket,
            map(vec![
                ("v", 1.into()),
                ("id", 1.into()),
                ("op", "health".into()),
            ]),
        )
        .await;
        assert_eq!(field(&reply, "ok").as_bool(), Some(true));
        let stats = client.stats().await.unwrap();
        assert!(stats.errors.get("bad_request").copied().unwrap_or(0) >= 8);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn many_clients_in_parallel_get_their_own_replies() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = std::sync::Arc::new(daemon.client().await);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = std::sync::Arc::clone(&client);
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let agent = client.spawn(sh("exit 0")).await.unwrap();
                    let got = client.get(&agent.id.to_string()).await.unwrap();
                    assert_eq!(got.id, agent.id);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.spawns, 400);
        daemon.shutdown().await;
    })
    .await
}

/// ZMTP 3.0 greeting (NULL mechanism), READY with a socket type, then a frame header that
/// claims 32 TiB: the bytes a hostile peer needs to make an unpatched zeromq reserve memory.
fn hostile_handshake(socket_type: &str) -> Vec<u8> {
    let mut bytes = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0];
    bytes.extend_from_slice(b"NULL");
    bytes.extend_from_slice(&[0; 16]);
    bytes.push(0);
    bytes.extend_from_slice(&[0; 31]);
    assert_eq!(bytes.len(), 64);
    let mut ready = vec![5];
    ready.extend_from_slice(b"READY");
    ready.push(11);
    ready.extend_from_slice(b"Socket-Type");
    ready.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    ready.extend_from_slice(socket_type.as_bytes());
    bytes.push(0x04);
    bytes.push(ready.len() as u8);
    bytes.extend_from_slice(&ready);
    bytes.push(0x02);
    bytes.extend_from_slice(&(1u64 << 45).to_be_bytes());
    bytes
}

async fn send_hostile_header(endpoint: &str, socket_type: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = endpoint.strip_prefix("tcp://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(&hostile_handshake(socket_type))
        .await
        .unwrap();
    // The daemon closes this connection; read its greeting and READY until EOF.
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink).await;
}

#[tokio::test]
async fn a_frame_header_claiming_terabytes_closes_that_connection_only() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        send_hostile_header(&daemon.addresses.control, "DEALER").await;
        send_hostile_header(&daemon.addresses.publish, "SUB").await;
        // The daemon is alive, and so are other clients' connections.
        assert_eq!(client.health().await.unwrap().protocol, 1);
        let fresh = daemon.client().await;
        fresh.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_frame_far_beyond_the_limit_closes_the_connection_instead_of_being_buffered() {
    within(async {
        let daemon = TestDaemon::start_with(|config| config.max_frame = 64 * 1024).await;
        let mut socket = dealer(&daemon).await;
        // Over max_frame but within the slack: read, then refused with a typed error.
        let reply = ask_body(&mut socket, vec![0u8; 512 * 1024]).await;
        assert_eq!(error_code(&reply), "too_large");
        // Far beyond: the connection is closed before the frame is buffered.
        socket.send(vec![vec![0u8; 4 * 1024 * 1024]]).await;
        let client = daemon.client().await;
        client.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_that_never_reads_its_replies_holds_nobody_else_up() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        // A log big enough that each reply is about 1 MiB.
        let agent = client.spawn(sh("seq -f '%0127g' 1 20000")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        // A DEALER pipelines hundreds of reads and never receives a single reply.
        let mut greedy = dealer(&daemon).await;
        for i in 0..300u64 {
            let body = map(vec![
                ("v", 1.into()),
                ("id", i.into()),
                ("op", "read_logs".into()),
                ("agent", agent.id.to_string().into()),
                ("limit", 10_000.into()),
            ]);
            greedy.send(vec![body]).await;
        }
        // Everyone else is still answered promptly (the greedy client gets 64 requests in
        // flight at most, its replies wait for room only briefly, and big reads take turns).
        let options = drover_client::ClientOptions {
            request_timeout: std::time::Duration::from_secs(5),
            ..daemon.options()
        };
        let other = drover_client::Client::connect_with(&daemon.addresses.control, options)
            .await
            .unwrap();
        for _ in 0..50 {
            other.health().await.unwrap();
        }
        drop(greedy);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn one_client_gets_at_most_64_requests_in_flight_and_a_typed_refusal_beyond() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("sleep 100")).await.unwrap();
        let mut socket = dealer(&daemon).await;
        for i in 0..100u64 {
            let body = map(vec![
                ("v", 1.into()),
                ("id", i.into()),
                ("op", "wait".into()),
                ("agent", agent.id.to_string().into()),
                ("timeout_ms", 20_000.into()),
            ]);
            socket.send(vec![body]).await;
        }
        // The 36 beyond the first 64 are refused at once, in order, while the 64 wait.
        let mut refused = Vec::new();
        while refused.len() < 36 {
            let frames = socket.recv().await;
            let reply = rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap();
            assert_eq!(error_code(&reply), "limit_reached", "{reply}");
            refused.push(field(&reply, "id").as_u64().unwrap());
        }
        assert_eq!(refused, (64..100).collect::<Vec<u64>>());
        // Other clients are unaffected; once the agent ends, all 64 waits answer.
        client.kill(&agent.id.to_string()).await.unwrap();
        let mut answered = Vec::new();
        while answered.len() < 64 {
            let frames = socket.recv().await;
            let reply = rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap();
            assert_eq!(field(&reply, "ok").as_bool(), Some(true), "{reply}");
            answered.push(field(&reply, "id").as_u64().unwrap());
        }
        answered.sort_unstable();
        assert_eq!(answered, (0..64).collect::<Vec<u64>>());
        daemon.shutdown().await;
    })
    .await
}

/// One key gets at most 256 requests in flight over all its connections (a quarter of the
/// socket's 1,024): a `read` key with many connections of long `wait`s cannot take every slot
/// from the other keys. Before, 16 such connections refused every other client.
#[tokio::test]
async fn one_key_gets_at_most_a_quarter_of_the_sockets_requests_in_flight() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("sleep 100")).await.unwrap();
        let wait = |i: u64| {
            map(vec![
                ("v", 1.into()),
                ("id", i.into()),
                ("op", "wait".into()),
                ("agent", agent.id.to_string().into()),
                ("timeout_ms", 20_000.into()),
            ])
        };
        // Five connections of the harness's key, 64 long waits each (the client bound): 320.
        let mut sockets = Vec::new();
        for _ in 0..5 {
            let mut socket = dealer(&daemon).await;
            for i in 0..64u64 {
                socket.send(vec![wait(i)]).await;
            }
            sockets.push(socket);
        }
        // Another key is served meanwhile.
        let other = drover_client::CurveKeys::generate().unwrap();
        drover_daemon::auth::allow_key(
            &daemon.state_dir,
            &other.public,
            drover_proto::Role::Control,
            "another client",
        )
        .unwrap();
        let options = drover_client::ClientOptions {
            curve: Some(daemon.curve(&other)),
            ..daemon.options()
        };
        let other = drover_client::Client::connect_with(&daemon.addresses.control, options)
            .await
            .unwrap();
        other.health().await.unwrap();
        // Once the agent ends, the 256 the key had in flight are answered; the other 64 were
        // refused at once.
        other.kill(&agent.id.to_string()).await.unwrap();
        let (mut answered, mut refused) = (0, 0);
        for socket in &mut sockets {
            for _ in 0..64 {
                let frames = socket.recv().await;
                let reply = rmpv::decode::read_value(&mut frames[0].as_slice()).unwrap();
                match field(&reply, "ok").as_bool() {
                    Some(true) => answered += 1,
                    _ => {
                        assert_eq!(error_code(&reply), "limit_reached", "{reply}");
                        refused += 1;
                    }
                }
            }
        }
        assert_eq!((answered, refused), (256, 64));
        daemon.shutdown().await;
    })
    .await
}
