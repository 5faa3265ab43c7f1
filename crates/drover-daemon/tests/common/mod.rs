//! Shared helpers for the daemon's integration tests: the real daemon, in-process, on port 0.

#![allow(dead_code)]

pub mod leftovers;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use drover_client::{Client, ClientError, ClientOptions, CurveClient, CurveKeys};
use drover_daemon::{Addresses, Config};
use drover_proto::op::{AgentRef, ReadLogsArgs};
use drover_proto::{AgentInfo, AgentSpec, ErrorCode, Record, Role};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One timeout for every wait in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon running in this process.
pub struct TestDaemon {
    pub addresses: Addresses,
    pub state_dir: PathBuf,
    /// A client keypair allowed with the `control` role.
    pub keys: CurveKeys,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), drover_daemon::DaemonError>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDaemon {
    /// Start with test defaults.
    pub async fn start() -> TestDaemon {
        Self::start_with(|_| {}).await
    }

    /// Start with adjusted configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut daemon = Self::start_in(dir.path().to_path_buf(), adjust).await;
        daemon._dir = Some(dir);
        daemon
    }

    /// Start on an existing state directory (for restart tests).
    pub async fn start_in(state_dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> TestDaemon {
        let mut config = Config::ephemeral(&state_dir);
        config.default_grace = Duration::from_secs(5);
        adjust(&mut config);
        // TCP needs an allowed key: the harness makes one with full control.
        let keys = CurveKeys::generate().expect("client keys");
        drover_daemon::auth::allow_key(&state_dir, &keys.public, Role::Control, "test harness")
            .expect("allow the harness key");
        let listeners = drover_daemon::bind(&config).await.expect("bind");
        let addresses = listeners.addresses.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(drover_daemon::run(config, listeners, async {
            let _ = stopped.await;
        }));
        TestDaemon {
            addresses,
            state_dir,
            keys,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// A client connected to the control socket with the harness's `control` key.
    pub async fn client(&self) -> Client {
        Client::connect_with(&self.addresses.control, self.options())
            .await
            .expect("connect")
    }

    /// Client options carrying the harness's key.
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            curve: Some(self.curve(&self.keys)),
            ..ClientOptions::default()
        }
    }

    /// CURVE settings for this daemon with `keys`.
    pub fn curve(&self, keys: &CurveKeys) -> CurveClient {
        CurveClient {
            server_key: self.addresses.server_key.clone(),
            keys: keys.clone(),
        }
    }

    /// Set a raw libzmq socket up to reach this daemon's TCP endpoints with the harness's key.
    pub fn secure(&self, socket: &zmq::Socket) {
        let key = |z85: &str| drover_zmq::key::decode(z85).expect("z85 key");
        socket
            .set_curve_serverkey(&key(&self.addresses.server_key))
            .expect("CURVE options");
        socket
            .set_curve_publickey(&key(&self.keys.public))
            .expect("CURVE options");
        socket
            .set_curve_secretkey(&key(&self.keys.secret))
            .expect("CURVE options");
    }

    /// Shut the daemon down and wait for it; returns the state dir's owner for reuse.
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("daemon shut down in time")
                .expect("daemon task")
                .expect("daemon result");
        }
        self._dir.take()
    }
}

/// A daemon dropped without [`TestDaemon::shutdown`] (a failed test): its holders and their
/// agents would run on after the test.
impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.stop.is_some() {
            if let Some(task) = self.task.take() {
                task.abort();
            }
            leftovers::kill_holders(&self.state_dir);
        }
    }
}

/// Run a test body under the hard timeout.
pub async fn within<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, body)
        .await
        .expect("test exceeded its timeout")
}

/// Poll `probe` until it returns `Some`, or fail naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A spec running `sh -c script`.
pub fn sh(script: &str) -> AgentSpec {
    AgentSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        ..AgentSpec::default()
    }
}

/// Every stored record of an agent, reading page by page.
pub async fn all_records(client: &Client, agent: &AgentInfo) -> Vec<Record> {
    let mut records = Vec::new();
    let mut args = ReadLogsArgs::new(AgentRef::new(agent.id.to_string()));
    args.limit = Some(10_000);
    loop {
        let read = client.read_logs(args.clone()).await.expect("read_logs");
        let done = read.records.is_empty();
        records.extend(read.records);
        if done {
            return records;
        }
        args.since_seq = Some(read.next_seq);
    }
}

/// The bytes of all records of one stream, concatenated.
pub fn text(records: &[Record]) -> String {
    let bytes: Vec<u8> = records.iter().flat_map(|r| r.data.clone()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The error code of a failed call.
pub fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(error) => error.code().expect("a wire error code"),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

/// Wait for the agent's ready line (its first record).
pub async fn wait_ready(client: &Client, agent: &AgentInfo) {
    wait_for("the agent's ready line", || async {
        let records = all_records(client, agent).await;
        records
            .iter()
            .any(|r| r.data.starts_with(b"ready"))
            .then_some(())
    })
    .await
}

/// A raw libzmq socket for wire-level tests, frames as byte vectors.
pub struct Raw(pub drover_zmq::Async);

impl Raw {
    pub async fn send(&mut self, frames: Vec<Vec<u8>>) {
        let frames: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.0.send(&frames).await.expect("send");
    }

    pub async fn recv(&mut self) -> Vec<Vec<u8>> {
        let frames = self.0.recv().await.expect("recv");
        frames.iter().map(|frame| frame.to_vec()).collect()
    }
}

impl TestDaemon {
    /// A raw socket of `kind` connected to `endpoint` with the harness's key.
    pub fn raw(&self, kind: zmq::SocketType, endpoint: &str) -> Raw {
        let socket = zmq::Context::new().socket(kind).expect("socket");
        socket.set_linger(0).expect("linger");
        self.secure(&socket);
        socket.connect(endpoint).expect("connect");
        Raw(drover_zmq::Async::new(socket).expect("register"))
    }
}
