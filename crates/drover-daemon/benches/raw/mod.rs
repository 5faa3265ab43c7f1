//! Shared by the benchmarks: a daemon with an allowed client key, and raw libzmq CURVE baselines.

#![allow(dead_code)]

use drover_client::{ClientOptions, CurveClient, CurveKeys};
use drover_daemon::{Addresses, Config};

/// Start the daemon on `config` with a `control` client key; returns where it is, the client
/// options to reach it over CURVE, and the handle to stop it.
pub async fn daemon(
    config: Config,
) -> (
    Addresses,
    ClientOptions,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), drover_daemon::DaemonError>>,
) {
    let keys = CurveKeys::generate().unwrap();
    std::fs::create_dir_all(&config.state_dir).unwrap();
    drover_daemon::auth::allow_key(
        &config.state_dir,
        &keys.public,
        drover_proto::Role::Control,
        "bench",
    )
    .unwrap();
    let listeners = drover_daemon::bind(&config).await.unwrap();
    let addresses = listeners.addresses.clone();
    let options = ClientOptions {
        curve: Some(CurveClient {
            server_key: addresses.server_key.clone(),
            keys,
        }),
        ..ClientOptions::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(drover_daemon::run(config, listeners, async {
        let _ = stopped.await;
    }));
    (addresses, options, stop, task)
}

/// A CURVE server keypair and a client keypair, binary.
pub struct Curve {
    server: zmq::CurveKeyPair,
    client: zmq::CurveKeyPair,
}

impl Curve {
    pub fn new() -> Curve {
        Curve {
            server: zmq::CurveKeyPair::new().unwrap(),
            client: zmq::CurveKeyPair::new().unwrap(),
        }
    }

    pub fn server(&self, socket: &zmq::Socket) {
        socket.set_curve_server(true).unwrap();
        socket.set_curve_secretkey(&self.server.secret_key).unwrap();
    }

    pub fn client(&self, socket: &zmq::Socket) {
        socket.set_curve_serverkey(&self.server.public_key).unwrap();
        socket.set_curve_publickey(&self.client.public_key).unwrap();
        socket.set_curve_secretkey(&self.client.secret_key).unwrap();
    }
}

/// The paced writer agents of the benchmarks run (the bench binary re-executed with
/// `--writer <lines/s> <count>`): `count` 100-byte lines at `rate` lines/s, each starting with
/// its write time in unix nanoseconds (20 digits), so a reader measures write → receipt.
pub fn writer(rate: u64, count: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let started = std::time::Instant::now();
    for i in 0..count {
        let due = started + std::time::Duration::from_nanos(i * 1_000_000_000 / rate);
        let wait = due.saturating_duration_since(std::time::Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        let line = format!("{:020} {:<78}\n", drover_proto::now_ns(), "x");
        out.write_all(line.as_bytes()).unwrap();
        out.flush().unwrap();
    }
}
