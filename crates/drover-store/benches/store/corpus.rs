//! The three corpora of the store benchmark, as the daemon would capture them.

use drover_proto::{Record, Seq, StreamKind};

/// Lines longer than this become several records, as the daemon's default `max_record` does.
const MAX_RECORD: usize = 64 * 1024;

/// A named list of output lines.
pub struct Corpus {
    pub name: &'static str,
    pub lines: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn output(&self) -> u64 {
        self.lines.iter().map(|l| l.len() as u64).sum()
    }
}

/// `yes`-like 100-byte lines; the committed transcript; the committed compiler log.
pub fn all() -> Vec<Corpus> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/corpus");
    let mut yes = vec![b'y'; 99];
    yes.push(b'\n');
    vec![
        Corpus {
            name: "yes (100-byte lines)",
            lines: vec![yes; 200_000],
        },
        Corpus {
            name: "claude stream-json",
            lines: split(&std::fs::read(dir.join("claude-stream.jsonl")).expect("corpus")),
        },
        Corpus {
            name: "cargo build -vv",
            lines: split(&std::fs::read(dir.join("cargo-build.log")).expect("corpus")),
        },
    ]
}

/// Split into lines (each keeps its newline), long ones into `MAX_RECORD` pieces.
fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| line.chunks(MAX_RECORD))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Records `first..` of `lines` repeated to `count`, 1 µs apart plus a little jitter (as a
/// capture loop stamps them), stdout.
pub fn records(lines: &[Vec<u8>], first: u64, count: usize) -> Vec<Record> {
    (0..count as u64)
        .map(|i| {
            let seq = first + i;
            Record {
                seq: Seq(seq),
                ts: 1_700_000_000_000_000_000 + seq as i64 * 1_000 + (seq % 7) as i64,
                stream: StreamKind::Stdout,
                data: lines[(seq as usize - 1) % lines.len()].clone(),
                partial: false,
            }
        })
        .collect()
}
