//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use drover_proto::{AgentId, AgentInfo, AgentSpec, AgentStatus, Record, Seq, StreamKind};
use drover_store::{Store, StoreConfig};

/// Hard limit for every async test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Record `seq` of a deterministic log: its data names the seq, so corruption or mix-ups show.
pub fn rec(seq: u64) -> Record {
    Record {
        seq: Seq(seq),
        ts: 1_000_000 + seq as i64 * 10,
        stream: if seq % 3 == 0 {
            StreamKind::Stderr
        } else {
            StreamKind::Stdout
        },
        data: format!("line {seq} {}\n", "x".repeat((seq % 50) as usize)).into_bytes(),
        partial: seq % 7 == 0,
    }
}

/// Record `seq` with 100 bytes that do not compress (a deterministic xorshift of the seq), for
/// tests about bytes on disk that packing must not shrink away.
pub fn noisy(seq: u64) -> Record {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Record {
        data,
        partial: false,
        ..rec(seq)
    }
}

pub fn recs(from: u64, to_inclusive: u64) -> Vec<Record> {
    (from..=to_inclusive).map(rec).collect()
}

/// Assert `records` are exactly `rec(from)..` in order.
pub fn assert_run(records: &[Record], from: u64) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            *r,
            rec(from + i as u64),
            "record {i} of a run starting at {from}"
        );
    }
}

pub fn small_config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 4096,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &std::path::Path, config: StoreConfig) -> Store {
    Store::open(dir, config).expect("open store")
}

pub fn agent_info(name: Option<&str>, created_at: i64, status: AgentStatus) -> AgentInfo {
    let spec = AgentSpec {
        name: name.map(str::to_owned),
        argv: vec!["echo".into(), "hi".into()],
        ..AgentSpec::default()
    };
    AgentInfo {
        id: AgentId::new(),
        name: name.map(str::to_owned),
        backend: "command".into(),
        status,
        created_at,
        labels: Default::default(),
        spec,
        activity: None,
        restarts: 0,
        timed_out: false,
    }
}
