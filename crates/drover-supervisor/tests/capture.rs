//! Capture guarantees: byte-exact records, one seq across streams, nothing left undrained.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use drover_supervisor::{spawn, CapturedRecord, Observer, Status, Stream, SupervisorConfig};

#[tokio::test]
async fn one_mebibyte_line_arrives_in_partial_pieces() {
    within(async {
        let (handle, rec) = start(sh("head -c 1048577 /dev/zero | tr '\\0' x; printf '\\n'"));
        assert!(matches!(
            handle.wait().await,
            Status::Exited { code: 0, .. }
        ));
        let records = rec.records.lock().unwrap().clone();
        let max = SupervisorConfig::default().max_record;
        let mut want = vec![b'x'; 1048577];
        want.push(b'\n');
        let got: Vec<u8> = records.iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
        assert!(records.len() >= 17, "1 MiB must be cut at {max} bytes");
        let (last, pieces) = records.split_last().unwrap();
        assert!(pieces
            .iter()
            .all(|r| r.partial && r.data.len() <= max && !r.data.contains(&b'\n')));
        assert!(!last.partial && last.data.ends_with(b"\n"));
    })
    .await;
}

#[tokio::test]
async fn invalid_utf8_is_kept_byte_exact() {
    within(async {
        let (handle, rec) = start(sh("printf 'a\\377b\\n'; echo later"));
        handle.wait().await;
        let data: Vec<Vec<u8>> = rec
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.data.clone())
            .collect();
        assert_eq!(data, [b"a\xffb\n".to_vec(), b"later\n".to_vec()]);
    })
    .await;
}

#[tokio::test]
async fn interleaved_streams_keep_their_order_in_seq() {
    within(async {
        let script = "i=1; while [ $i -le 20 ]; do echo out$i; sleep 0.01; echo err$i >&2; \
                      sleep 0.01; i=$((i+1)); done";
        let (handle, rec) = start(sh(script));
        assert!(matches!(
            handle.wait().await,
            Status::Exited { code: 0, .. }
        ));
        let records = rec.records.lock().unwrap().clone();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
        for (i, pair) in records.chunks(2).enumerate() {
            let n = i + 1;
            assert_eq!(
                (pair[0].stream, pair[0].data.clone()),
                (Stream::Stdout, format!("out{n}\n").into_bytes())
            );
            assert_eq!(
                (pair[1].stream, pair[1].data.clone()),
                (Stream::Stderr, format!("err{n}\n").into_bytes())
            );
        }
        assert!(
            records.windows(2).all(|w| w[0].ts <= w[1].ts),
            "ts follow seq"
        );
    })
    .await;
}

#[tokio::test]
async fn idle_partial_line_is_flushed() {
    within(async {
        let (handle, rec) = start(sh("printf abc; sleep 1; echo def"));
        handle.wait().await;
        let records: Vec<(Vec<u8>, bool)> = rec
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.data.clone(), r.partial))
            .collect();
        assert_eq!(
            records,
            [(b"abc".to_vec(), true), (b"def\n".to_vec(), false)]
        );
    })
    .await;
}

#[tokio::test]
async fn leftover_at_eof_is_flushed_partial() {
    within(async {
        let (handle, rec) = start(sh("printf 'line\\ntail'"));
        handle.wait().await;
        let records: Vec<(Vec<u8>, bool)> = rec
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.data.clone(), r.partial))
            .collect();
        assert_eq!(
            records,
            [(b"line\n".to_vec(), false), (b"tail".to_vec(), true)]
        );
    })
    .await;
}

/// Counts bytes and checks seq continuity without keeping anything.
#[derive(Default)]
struct Counter {
    bytes: AtomicU64,
    last_seq: AtomicU64,
}

impl Observer for Counter {
    fn records(&self, batch: Vec<CapturedRecord>) {
        for r in batch {
            let prev = self.last_seq.swap(r.seq, Ordering::SeqCst);
            assert_eq!(r.seq, prev + 1);
            self.bytes.fetch_add(r.data.len() as u64, Ordering::SeqCst);
        }
    }
    fn status(&self, _: &Status) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_with_no_reader_finish_exactly() {
    within(async {
        let counter = Arc::new(Counter::default());
        let handle = spawn(
            sh("head -c 200000000 /dev/zero; head -c 1000 /dev/zero >&2"),
            SupervisorConfig::default(),
            counter.clone(),
        );
        let end = handle.wait().await;
        assert!(matches!(end, Status::Exited { code: 0, .. }), "{end:?}");
        assert_eq!(counter.bytes.load(Ordering::SeqCst), 200_001_000);
    })
    .await;
}

#[tokio::test]
async fn output_of_an_escaped_process_stops_at_the_drain_timeout() {
    within(async {
        // The grandchild leaves the group with setsid and keeps stdout open; the agent's exit
        // must still be reported, after drain_timeout, with everything read so far.
        let config = SupervisorConfig {
            drain_timeout: std::time::Duration::from_millis(300),
            ..Default::default()
        };
        let rec = Recorder::new();
        let script = "setsid sh -c 'echo $$; exec sleep 60' & sleep 0.2; echo leader-done";
        let started = std::time::Instant::now();
        let handle = spawn(sh(script), config, rec.clone());
        let end = handle.wait().await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(50),
            "drain did not time out"
        );
        assert!(matches!(end, Status::Exited { code: 0, .. }), "{end:?}");
        assert!(rec.has_line("leader-done"));
        assert_eq!(rec.status_names(), ["running", "exited"]);
        let escaped: i32 = rec.stdout().lines().next().unwrap().parse().unwrap();
        assert!(
            is_alive(escaped as u32),
            "the escaped process left the group, so it survives"
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(escaped),
            nix::sys::signal::Signal::SIGKILL,
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_process_writing_forever_does_not_hold_the_exit() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("escaped.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec yes escaped' & sleep 0.2",
            pidfile.display()
        );
        let config = SupervisorConfig {
            drain_timeout: std::time::Duration::from_millis(300),
            ..Default::default()
        };
        let counter = Arc::new(Counter::default());
        let handle = spawn(sh(&script), config, counter.clone());
        let end = handle.wait().await;
        assert!(matches!(end, Status::Exited { code: 0, .. }), "{end:?}");
        assert!(
            counter.bytes.load(Ordering::SeqCst) > 0,
            "output was read until the timeout"
        );
        let bytes_at_exit = counter.bytes.load(Ordering::SeqCst);
        wait_for("pid file", || pidfile.exists()).await;
        let escaped: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(escaped),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(
            counter.bytes.load(Ordering::SeqCst),
            bytes_at_exit,
            "nothing after exit"
        );
    })
    .await;
}

/// Records like [`Recorder`], but takes its time over the first batch, as a loaded daemon
/// might: meanwhile the child finishes writing and exits with output still in the pipe.
struct SlowFirst {
    inner: Arc<Recorder>,
    slowed: std::sync::atomic::AtomicBool,
}

impl Observer for SlowFirst {
    fn records(&self, batch: Vec<CapturedRecord>) {
        if !self.slowed.swap(true, Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        self.inner.records(batch);
    }

    fn status(&self, status: &Status) {
        self.inner.status(status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_still_in_the_pipe_at_the_drain_deadline_is_kept() {
    within(async {
        // No drain time at all: the deadline passes the moment the child is reaped, while the
        // reader is still busy with the first batch and the rest sits unread in the pipe.
        let config = SupervisorConfig {
            drain_timeout: std::time::Duration::ZERO,
            ..Default::default()
        };
        let inner = Recorder::new();
        let observer = Arc::new(SlowFirst {
            inner: Arc::clone(&inner),
            slowed: std::sync::atomic::AtomicBool::new(false),
        });
        let script = "echo first; sleep 0.05; for i in $(seq 1 200); do echo line $i; done";
        let handle = spawn(sh(script), config, observer);
        assert!(matches!(
            handle.wait().await,
            Status::Exited { code: 0, .. }
        ));
        let mut expected = String::from("first\n");
        for i in 1..=200 {
            expected.push_str(&format!("line {i}\n"));
        }
        assert_eq!(
            inner.stdout(),
            expected,
            "every line the agent wrote was kept"
        );
    })
    .await;
}
