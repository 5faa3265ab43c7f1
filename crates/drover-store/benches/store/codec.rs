//! zstd levels vs lz4_flex on the packer's unit: 64 KiB blocks of encoded records.

use std::time::{Duration, Instant};

use crate::corpus::Corpus;

const BLOCK: usize = 64 * 1024;

/// The corpus as the packer lays it out: each record as `varint(len << 2)`, a 1-byte ts delta
/// and its data, cut into blocks at 64 KiB.
fn blocks(corpus: &Corpus) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut block = Vec::new();
    for line in &corpus.lines {
        let mut tag = (line.len() as u64) << 2;
        while tag >= 0x80 {
            block.push(tag as u8 | 0x80);
            tag >>= 7;
        }
        block.push(tag as u8);
        block.push(2);
        block.extend_from_slice(line);
        if block.len() >= BLOCK {
            blocks.push(std::mem::take(&mut block));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Print ratio and speeds of each codec on the corpus.
pub fn compare(corpus: &Corpus) {
    let blocks = blocks(corpus);
    let raw: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    println!(
        "  {:<22} {:>7} {:>12} {:>12}",
        "codec (64 KiB blocks)", "ratio", "compress", "decompress"
    );
    let line = |name: String, packed: Vec<Vec<u8>>, c: Duration, d: Duration| {
        let size: u64 = packed.iter().map(|p| p.len() as u64 + 36).sum();
        println!(
            "  {name:<22} {:>6.2}x {:>7.0} MB/s {:>7.0} MB/s",
            raw as f64 / size as f64,
            mbps(raw, c),
            mbps(raw, d)
        );
    };
    let t = Instant::now();
    let packed: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| lz4_flex::block::compress(b))
        .collect();
    let c = t.elapsed();
    let t = Instant::now();
    for (p, b) in packed.iter().zip(&blocks) {
        let out = lz4_flex::block::decompress(p, b.len()).expect("lz4");
        assert_eq!(out.len(), b.len());
    }
    line("lz4_flex".into(), packed, c, t.elapsed());
    for level in [1, 3, 6, 9, 19] {
        let t = Instant::now();
        let packed: Vec<Vec<u8>> = blocks
            .iter()
            .map(|b| zstd::bulk::compress(b, level).expect("zstd"))
            .collect();
        let c = t.elapsed();
        let t = Instant::now();
        for (p, b) in packed.iter().zip(&blocks) {
            let out = zstd::bulk::decompress(p, b.len()).expect("zstd");
            assert_eq!(out.len(), b.len());
        }
        line(format!("zstd level {level}"), packed, c, t.elapsed());
    }
    // What the packer and readers do: one context for every block of a segment (or of a read).
    // The rows above make a context per block.
    let t = Instant::now();
    let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
    let packed: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| compressor.compress(b).expect("zstd"))
        .collect();
    let c = t.elapsed();
    let t = Instant::now();
    let mut decompressor = zstd::bulk::Decompressor::new().expect("zstd");
    for (p, b) in packed.iter().zip(&blocks) {
        let out = decompressor.decompress(p, b.len()).expect("zstd");
        assert_eq!(out.len(), b.len());
    }
    line("zstd 3, one context".into(), packed, c, t.elapsed());
}
