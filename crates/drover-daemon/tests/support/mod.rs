//! Helpers for the HTTP tests and the SSE benchmark: the real daemon in-process, and a tiny
//! HTTP/1.1 client (one-shot requests and an incremental Server-Sent Events reader) over a
//! plain `TcpStream`, so the tests see exactly the bytes a foreign client would.
//!
//! Every HTTP request needs a token: [`Daemon::start_with`] creates a `control` token in the
//! daemon's state directory and registers it for the daemon's address, and [`request`] and
//! [`SseClient::connect`] send it as `Authorization: Bearer` unless the request names its own
//! `Authorization` or `Cookie` header. [`request_without_token`] sends none.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use drover_proto::Role;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

// The daemon harness, `within` and the timeout are the control tests'; this module adds HTTP.
#[path = "../common/mod.rs"]
mod common;

// Not every user of this module (the SSE benchmark) needs it.
#[allow(unused_imports)]
pub use common::within;

/// Poll `probe` until it returns true; panic naming `what` after the common timeout.
pub async fn wait_for<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    common::wait_for(what, || {
        let probed = probe();
        async move { probed.await.then_some(()) }
    })
    .await
}

/// The control token of each harness daemon, by HTTP address.
static TOKENS: Mutex<Option<HashMap<SocketAddr, String>>> = Mutex::new(None);

pub fn token_for(addr: SocketAddr) -> Option<String> {
    let tokens = TOKENS.lock().unwrap_or_else(|p| p.into_inner());
    tokens.as_ref()?.get(&addr).cloned()
}

/// The harness's headers plus the daemon's token, unless they carry a credential already.
fn with_token(addr: SocketAddr, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let has_credential = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("cookie"));
    if !has_credential {
        if let Some(token) = token_for(addr) {
            all.push(("Authorization".into(), format!("Bearer {token}")));
        }
    }
    all
}

/// A daemon running in this process on ephemeral ports, with its HTTP address at hand.
pub struct Daemon {
    pub addr: SocketAddr,
    pub control: String,
    /// The `control` token the harness sends.
    pub token: String,
    pub state_dir: PathBuf,
    /// The HTTP unix socket.
    pub unix: Option<PathBuf>,
    /// The ready line's `tls=` fingerprint.
    pub tls: Option<String>,
    pub http_url: String,
    inner: common::TestDaemon,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Daemon::start_with(|_| {}).await
    }

    /// Start with a config adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut drover_daemon::Config)) -> Daemon {
        let inner = common::TestDaemon::start_with(tune).await;
        let http_url = inner.addresses.http.clone();
        let addr = http_url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .parse()
            .expect("http address");
        let control = inner.addresses.control.clone();
        let token = drover_daemon::token::create(&inner.state_dir, Role::Control, "test harness")
            .expect("create the harness token")
            .secret;
        TOKENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(addr, token.clone());
        Daemon {
            addr,
            control,
            token,
            state_dir: inner.state_dir.clone(),
            unix: inner.addresses.http_unix.as_ref().map(PathBuf::from),
            tls: inner.addresses.tls.clone(),
            http_url,
            inner,
        }
    }

    /// Make a token with `role` in this daemon's state directory; its secret.
    pub fn token(&self, role: Role, comment: &str) -> String {
        drover_daemon::token::create(&self.state_dir, role, comment)
            .expect("create a token")
            .secret
    }

    /// Shut down and wait for the daemon to return.
    pub async fn stop(self) {
        self.inner.shutdown().await;
    }

    pub async fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"").await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        let body = serde_json::to_vec(body).expect("json");
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &body,
        )
        .await
    }

    /// Spawn an agent running `argv`; its id.
    pub async fn spawn(&self, argv: &[&str]) -> String {
        self.spawn_spec(serde_json::json!({ "argv": argv })).await
    }

    /// Spawn an agent from a spec; its id.
    pub async fn spawn_spec(&self, spec: Value) -> String {
        let response = self
            .post_json("/v1/agents", &serde_json::json!({ "spec": spec }))
            .await;
        assert_eq!(response.status, 201, "spawn: {}", response.text());
        response.json()["agent"]["id"]
            .as_str()
            .expect("agent id")
            .to_owned()
    }

    /// Wait until the agent is terminal; its info.
    pub async fn wait_exit(&self, id: &str) -> Value {
        let response = self
            .get(&format!("/v1/agents/{id}/wait?timeout_ms=30000"))
            .await;
        assert_eq!(response.status, 200, "wait: {}", response.text());
        response.json()["agent"].clone()
    }

    /// The value of one un-labelled metric.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.get("/metrics").await.text();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
            .trim()
            .parse()
            .expect("metric value")
    }

    /// The number of records the agent has stored.
    pub async fn stored(&self, id: &str) -> u64 {
        let response = self
            .get(&format!("/v1/agents/{id}/logs?tail=1&format=json"))
            .await;
        response.json()["next_seq"].as_u64().expect("next_seq") - 1
    }
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end, with the daemon's
/// token unless `headers` carry a credential.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let headers = with_token(addr, headers);
    send(addr, method, path, &headers, body).await
}

/// One request with no credential at all.
pub async fn request_without_token(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    send(addr, method, path, &headers, body).await
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (read, write) = stream.into_split();
    exchange(read, write, &addr.to_string(), method, path, headers, body).await
}

/// One request over the daemon's HTTP unix socket (no token: file permission is the
/// credential).
pub async fn request_unix(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the unix socket");
    let (read, write) = stream.into_split();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    exchange(read, write, "localhost", method, path, &headers, body).await
}

/// Write one request, read the whole response.
async fn exchange(
    mut read: impl tokio::io::AsyncRead + Unpin,
    mut write: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Response {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // The default Host, unless the caller names its own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    // Written concurrently: the server may answer (413) before reading an oversize body.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut raw = Vec::new();
    let result = read.read_to_end(&mut raw).await;
    if raw.is_empty() {
        panic!("no response to {method} {path}: {result:?}");
    }
    drop(writer);
    parse_response(&raw)
}

/// A whole response's bytes, parsed (a chunked body is de-chunked).
pub fn parse_response(raw: &[u8]) -> Response {
    let (status, headers, rest) = parse_head(raw).expect("complete response head");
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        let mut raw = raw[rest..].to_vec();
        let mut body = Vec::new();
        dechunk(&mut raw, &mut body);
        body
    } else {
        raw[rest..].to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// A response head: status, headers, and where the body starts.
pub type Head = (u16, Vec<(String, String)>, usize);

/// The head, once it is complete.
pub fn parse_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .split(' ')
        .nth(1)?
        .parse()
        .expect("status code");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((status, headers, end + 4))
}

/// Move every complete chunk from `raw` to `body`; true once the last chunk was seen.
pub fn dechunk(raw: &mut Vec<u8>, body: &mut Vec<u8>) -> bool {
    let mut at = 0;
    let mut done = false;
    while let Some(line_end) = raw[at..].windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&raw[at..at + line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        let data = at + line_end + 2;
        if raw.len() < data + size + 2 {
            break;
        }
        body.extend_from_slice(&raw[data..data + size]);
        at = data + size + 2;
        if size == 0 {
            done = true;
            break;
        }
    }
    raw.drain(..at);
    done
}

/// One Server-Sent Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }

    pub fn seq(&self) -> u64 {
        self.id
            .as_deref()
            .expect("event has an id")
            .parse()
            .expect("numeric id")
    }
}

/// An open SSE response, read incrementally.
pub struct SseClient {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    /// Where to resume scanning `body` for the end of an event.
    scanned: usize,
    chunked: bool,
    ended: bool,
    /// Keep-alive comments seen.
    pub comments: usize,
}

impl SseClient {
    /// `GET path` with `Accept: text/event-stream` and `headers`.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let headers = with_token(addr, headers);
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let (status, headers, rest) = loop {
            if let Some(parsed) = parse_head(&raw) {
                break parsed;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read head");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let chunked = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        raw.drain(..rest);
        let mut client = SseClient {
            status,
            headers,
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            scanned: 0,
            chunked,
            ended: false,
            comments: 0,
        };
        // Part of the body may have come with the head.
        client.take(&raw);
        client
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The next event (comments are counted and skipped); `None` once the server ended the
    /// response.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.body[self.scanned..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| self.scanned + p)
            {
                let block: Vec<u8> = self.body.drain(..end + 2).collect();
                self.scanned = 0;
                match parse_event(&block[..end]) {
                    Some(event) => return Some(event),
                    None => {
                        self.comments += 1;
                        continue;
                    }
                }
            }
            self.scanned = self.body.len().saturating_sub(1);
            if self.ended {
                return None;
            }
            let mut buf = vec![0u8; 256 * 1024];
            let n = self.stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                self.ended = true;
                continue;
            }
            self.take(&buf[..n]);
        }
    }

    /// Add bytes read from the connection.
    fn take(&mut self, bytes: &[u8]) {
        if self.chunked {
            self.raw.extend_from_slice(bytes);
            if dechunk(&mut self.raw, &mut self.body) {
                self.ended = true;
            }
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    /// Events until the stream ends.
    pub async fn collect(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// An event block's fields; `None` for a comment-only block.
fn parse_event(block: &[u8]) -> Option<SseEvent> {
    let text = std::str::from_utf8(block).expect("utf-8 event");
    let mut event = SseEvent {
        id: None,
        event: "message".to_owned(),
        data: String::new(),
    };
    let mut fields = 0;
    for line in text.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        fields += 1;
        match name {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = value.to_owned(),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    (fields > 0).then_some(event)
}

/// The `log` events' seqs, checking each record's text is `line <seq>\n`.
pub fn log_seqs(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| {
            let seq = e.seq();
            let data = e.json();
            assert_eq!(data["seq"].as_u64(), Some(seq), "id and data.seq agree");
            assert_eq!(
                data["text"].as_str(),
                Some(format!("line {seq}\n").as_str()),
                "record {seq}"
            );
            seq
        })
        .collect()
}

/// A relay in front of `daemon` for browser tests: a page served from the relay has the same
/// origin as everything it relays, since the daemon sends no CORS headers. Every connection is
/// relayed byte for byte, except `GET <page path>`, answered with the page itself, and three
/// switches, each answered 204: `POST /__cut` drops every connection relayed so far (as a
/// network failure would); `POST /__down` does too and, until `POST /__up`, closes every new
/// connection as soon as its request arrives, as a dead network would. Returns the relay's
/// address.
pub async fn start_front(
    daemon: SocketAddr,
    page: Option<(&'static str, &'static str)>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let addr = listener.local_addr().expect("front address");
    let relays: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let relay = tokio::spawn(relay(
                client,
                daemon,
                page,
                Arc::clone(&relays),
                Arc::clone(&down),
            ));
            let mut relays = relays.lock().unwrap_or_else(|p| p.into_inner());
            relays.retain(|relay| !relay.is_finished());
            relays.push(relay.abort_handle());
        }
    });
    addr
}

async fn relay(
    mut client: TcpStream,
    daemon: SocketAddr,
    page: Option<(&'static str, &'static str)>,
    relays: Arc<Mutex<Vec<AbortHandle>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if let Some((path, html)) = page {
        let request_line = format!("GET {path}");
        let rest = head.strip_prefix(request_line.as_bytes()).unwrap_or(b"");
        if rest.starts_with(b" ") || rest.starts_with(b"?") {
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            return;
        }
    }
    let switch = [b"POST /__cut ".as_slice(), b"POST /__down ", b"POST /__up "]
        .iter()
        .position(|switch| head.starts_with(switch));
    if let Some(switch) = switch {
        down.store(switch == 1, Ordering::SeqCst);
        let _ = client
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await;
        if switch < 2 {
            // After answering: this relay is in the list too.
            let cut = std::mem::take(&mut *relays.lock().unwrap_or_else(|p| p.into_inner()));
            for relay in cut {
                relay.abort();
            }
        }
        return;
    }
    if down.load(Ordering::SeqCst) {
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(daemon).await else {
        return;
    };
    if upstream.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
