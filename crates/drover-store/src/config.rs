//! Store tuning knobs; the defaults are what the daemon uses.

use std::time::Duration;

/// How the store sizes segments, budgets disk, batches fsyncs and buffers followers.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// A segment is sealed and a new one started at the first append after it reaches this size.
    pub segment_bytes: u64,
    /// Default per-agent log budget: bytes of output (record data) kept, whatever they take on
    /// disk; the oldest blocks go first. `set_agent_budget` overrides it.
    pub agent_budget: u64,
    /// Budget for all logs together, in bytes on disk; the oldest sealed segments across agents
    /// go first.
    pub global_budget: u64,
    /// zstd level of packed blocks (chosen by measurement, see BENCHMARKS.md).
    pub pack_level: i32,
    /// Raw bytes of records per packed block: what a read decompresses to reach one record,
    /// and retention's unit. At most 1 MiB.
    pub pack_block: usize,
    /// The packer looks for sealed segments this often even when nobody woke it.
    pub pack_interval: Duration,
    /// Group commit: the longest time an appended record waits for its fdatasync.
    pub sync_interval: Duration,
    /// Group commit: an agent with this many unsynced records wakes the syncer early.
    pub sync_records: u64,
    /// Live batches kept per agent for followers (broadcast capacity).
    pub follow_buffer: usize,
    /// Lifecycle events kept in the registry (the newest ones).
    pub max_events: u64,
    /// A writer file descriptor unused for this long is closed by the syncer.
    pub writer_idle: Duration,
    /// Logs that keep their active segment open at once, store-wide. Past it the syncer closes
    /// the writers appended to longest ago (each reopens at its log's next append), within
    /// `sync_interval`: what bounds the store's descriptors with thousands of live agents.
    pub max_open_writers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_bytes: 8 * 1024 * 1024,
            // 128 MiB of output: a default agent keeps at least its last 100 MB.
            agent_budget: 128 * 1024 * 1024,
            global_budget: 4 * 1024 * 1024 * 1024,
            pack_level: 3,
            pack_block: 64 * 1024,
            pack_interval: Duration::from_secs(1),
            sync_interval: Duration::from_millis(50),
            sync_records: 10_000,
            // Small on purpose: a follower that falls behind refills from the store, losing
            // nothing, and a stalled one pins at most this many batches of an agent's output.
            follow_buffer: 64,
            max_events: 100_000,
            writer_idle: Duration::from_secs(30),
            max_open_writers: 1024,
        }
    }
}
