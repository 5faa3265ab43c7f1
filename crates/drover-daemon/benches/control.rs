//! Control-plane benchmark: round trips (CURVE over TCP, and ipc) and spawn RPCs through the
//! real daemon, beside raw libzmq baselines of the same transports measured in the same run.
//!
//! The daemon runs on a runtime of its own and the clients on another (a thread with a
//! current-thread runtime), as two processes would; likewise the raw echo's two ends each have
//! their own libzmq context, so each side has its own I/O thread in both measurements.
//!
//! `cargo bench -p drover-daemon --bench control`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_client::{Client, ClientOptions};
use drover_daemon::Config;
use drover_proto::AgentSpec;

mod raw;

const ROUND_TRIPS: usize = 5_000;
const CONCURRENT_CLIENTS: usize = 8;
/// Requests each client keeps in flight in the pipelined measurement (the protocol allows 64).
const IN_FLIGHT: usize = 8;
const SPAWNS: usize = 300;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.max_agents = 1_000;
    config.ipc = true;
    let daemon_runtime = tokio::runtime::Runtime::new().unwrap();
    let (addresses, options, stop, daemon) = daemon_runtime.block_on(raw::daemon(config));
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    clients.block_on(measure(dir.path(), &addresses, &options));
    let _ = stop.send(());
    daemon_runtime.block_on(daemon).unwrap().unwrap();
}

async fn measure(
    dir: &std::path::Path,
    addresses: &drover_daemon::Addresses,
    options: &ClientOptions,
) {
    let control = addresses.control.clone();
    let ipc = addresses.ipc.clone().unwrap();
    let client = Client::connect_with(&control, options.clone())
        .await
        .unwrap();
    let local = Client::connect(&ipc).await.unwrap();
    let agent = client.spawn(spec(&["sleep", "1000"])).await.unwrap();
    let id = agent.id.to_string();

    // Round trips are measured in interleaved blocks: raw echo, drover health, drover get,
    // again and again, so a drift of the machine's speed (this VM's moves by 2x within a day,
    // and by 30 % within a minute) falls on the baseline and on drover alike. Each figure is
    // the median of its blocks.
    println!(
        "control round trips, {BLOCKS} interleaved blocks of {BLOCK} sequential requests each \
         (median of the blocks)"
    );
    for (transport, endpoint, curve, caller) in [
        (
            "CURVE",
            "tcp://127.0.0.1:0".to_owned(),
            Some(raw::Curve::new()),
            &client,
        ),
        (
            "ipc",
            format!("ipc://{}", dir.join("echo.sock").display()),
            None,
            &local,
        ),
    ] {
        let echo = RawEcho::start(&endpoint, curve.as_ref());
        let (mut raw, mut health, mut get) = (Vec::new(), Vec::new(), Vec::new());
        echo.block(100);
        timed(100, || async { caller.health().await.unwrap() }).await;
        for _ in 0..BLOCKS {
            raw.push(echo.block(BLOCK));
            health.push(timed(BLOCK, || async { caller.health().await.unwrap() }).await);
            get.push(timed(BLOCK, || async { caller.get(&id).await.unwrap() }).await);
        }
        let raw = median(raw);
        print_rtt(&format!("raw libzmq {transport} REQ/REP echo"), raw, None);
        print_rtt(
            &format!("drover health, {transport}"),
            median(health),
            Some(raw),
        );
        print_rtt(&format!("drover get, {transport}"), median(get), Some(raw));
    }

    // Then each keeping IN_FLIGHT requests in flight, as a client that has several things to
    // ask does (the CLI's fan-out, a dashboard): what the daemon can serve.
    for in_flight in [1, IN_FLIGHT] {
        println!(
            "\n{CONCURRENT_CLIENTS} concurrent clients, {in_flight} request(s) in flight each, \
             {ROUND_TRIPS} health requests each"
        );
        let raw = raw_concurrent(ROUND_TRIPS, in_flight);
        println!("  raw libzmq CURVE x{CONCURRENT_CLIENTS}  : {raw:>10.0} requests/s");
        for (name, endpoint, options) in [
            ("CURVE", &control, options.clone()),
            ("ipc  ", &ipc, ClientOptions::default()),
        ] {
            let rate = concurrent_health(endpoint, &options, in_flight).await;
            println!(
                "  drover health x{CONCURRENT_CLIENTS}, {name}: {rate:>10.0} requests/s  ({:.0}% of raw CURVE)",
                100.0 * rate / raw
            );
        }
    }

    println!("\nspawn of /bin/true, {SPAWNS} sequential");
    let started = Instant::now();
    for _ in 0..SPAWNS {
        std::process::Command::new("/bin/true")
            .status()
            .expect("bare spawn");
    }
    let bare = SPAWNS as f64 / started.elapsed().as_secs_f64();
    println!("  bare std::process::Command : {bare:>10.0} spawns/s");
    let mut ids = Vec::with_capacity(2 * SPAWNS);
    for (name, client) in [("CURVE", &client), ("ipc  ", &local)] {
        let started = Instant::now();
        for _ in 0..SPAWNS {
            ids.push(client.spawn(spec(&["/bin/true"])).await.unwrap().id);
        }
        let rpc = SPAWNS as f64 / started.elapsed().as_secs_f64();
        println!(
            "  drover spawn RPC, {name}    : {rpc:>10.0} spawns/s  ({:.0}% of bare)",
            100.0 * rpc / bare
        );
    }
    for id in ids {
        client.wait(&id.to_string(), None).await.unwrap();
    }
    client.kill(&id).await.unwrap();
}

fn spec(argv: &[&str]) -> AgentSpec {
    AgentSpec {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        ..AgentSpec::default()
    }
}

/// CONCURRENT_CLIENTS clients on `control`, each keeping `in_flight` `health` requests in
/// flight (1: each sends its next once the last is answered): requests/s in all.
async fn concurrent_health(control: &str, options: &ClientOptions, in_flight: usize) -> f64 {
    use futures::StreamExt;
    let mut clients = Vec::new();
    for _ in 0..CONCURRENT_CLIENTS {
        clients.push(Arc::new(
            Client::connect_with(control, options.clone())
                .await
                .unwrap(),
        ));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(async move {
            let answered = futures::stream::iter(0..ROUND_TRIPS)
                .map(|_| client.health())
                .buffer_unordered(in_flight)
                .map(|reply| reply.expect("health"))
                .count()
                .await;
            assert_eq!(answered, ROUND_TRIPS, "every request answered");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (CONCURRENT_CLIENTS * ROUND_TRIPS) as f64 / started.elapsed().as_secs_f64()
}

/// Blocks of round trips in each interleaved series, and round trips in a block.
const BLOCKS: usize = 20;
const BLOCK: usize = 500;

fn median(mut blocks: Vec<Duration>) -> Duration {
    blocks.sort();
    blocks[blocks.len() / 2]
}

/// The mean round trip of `n` sequential calls.
async fn timed<F, Fut, T>(n: usize, mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let started = Instant::now();
    for _ in 0..n {
        call().await;
    }
    started.elapsed() / n as u32
}

fn print_rtt(name: &str, rtt: Duration, baseline: Option<Duration>) {
    let ratio = baseline
        .map(|b| {
            format!(
                "  ({:.2}x the raw echo)",
                rtt.as_secs_f64() / b.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<27}: {:>7.1} us/round trip, {:>8.0} /s{ratio}",
        rtt.as_secs_f64() * 1e6,
        1.0 / rtt.as_secs_f64()
    );
}

/// CONCURRENT_CLIENTS DEALER sockets (each on its own thread with its own context, as
/// separate processes would be), each keeping `in_flight` requests in flight (1: request,
/// reply, request...), against one ROUTER echo on one thread, CURVE over TCP: requests/s.
fn raw_concurrent(n: usize, in_flight: usize) -> f64 {
    let curve = raw::Curve::new();
    let router = zmq::Context::new().socket(zmq::ROUTER).unwrap();
    curve.server(&router);
    router.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let total = CONCURRENT_CLIENTS * n;
    let server = std::thread::spawn(move || {
        for _ in 0..total {
            let frames = router.recv_multipart(0).unwrap();
            router.send_multipart(frames, 0).unwrap();
        }
    });
    let barrier = Arc::new(std::sync::Barrier::new(CONCURRENT_CLIENTS + 1));
    let clients: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| {
            let dealer = zmq::Context::new().socket(zmq::DEALER).unwrap();
            curve.client(&dealer);
            dealer.connect(&endpoint).unwrap();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let body = [0x80u8; 48];
                let (mut sent, mut received) = (0, 0);
                while received < n {
                    while sent < n && sent - received < in_flight {
                        dealer.send(&body[..], 0).unwrap();
                        sent += 1;
                    }
                    dealer.recv_bytes(0).unwrap();
                    received += 1;
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for client in clients {
        client.join().unwrap();
    }
    let elapsed = started.elapsed();
    server.join().unwrap();
    total as f64 / elapsed.as_secs_f64()
}

/// A REQ/REP echo of a health-sized message on `endpoint` (CURVE when `curve` is given), each
/// side a blocking libzmq socket, the server on a thread of its own, each with its own context:
/// the floor for a round trip between two processes.
struct RawEcho {
    req: zmq::Socket,
    _server: std::thread::JoinHandle<()>,
}

impl RawEcho {
    fn start(endpoint: &str, curve: Option<&raw::Curve>) -> RawEcho {
        let rep = zmq::Context::new().socket(zmq::REP).unwrap();
        let req = zmq::Context::new().socket(zmq::REQ).unwrap();
        if let Some(curve) = curve {
            curve.server(&rep);
            curve.client(&req);
        }
        rep.bind(endpoint).unwrap();
        let endpoint = rep.get_last_endpoint().unwrap().unwrap();
        // Echoes until the client goes (the process ends with the bench).
        let server = std::thread::spawn(move || {
            while let Ok(message) = rep.recv_bytes(0) {
                if rep.send(message, 0).is_err() {
                    break;
                }
            }
        });
        req.connect(&endpoint).unwrap();
        RawEcho {
            req,
            _server: server,
        }
    }

    /// The mean round trip of `n` sequential echoes (this thread blocks meanwhile; the daemon
    /// runs on a runtime of its own).
    fn block(&self, n: usize) -> Duration {
        let body = [0x80u8; 48];
        let started = Instant::now();
        for _ in 0..n {
            self.req.send(&body[..], 0).unwrap();
            self.req.recv_bytes(0).unwrap();
        }
        started.elapsed() / n as u32
    }
}
