//! The follow primitive: history then live, no gap, no duplicate, lag refilled, close ends it.

mod common;

use common::{open, rec, recs, TIMEOUT};
use drover_proto::{AgentId, Record, Seq};
use drover_store::{FollowItem, Follower, LogQuery, Store, StoreConfig};
use proptest::prelude::*;

/// Drain a follower to its end, refilling any `Lag` range from the store; returns seqs seen
/// and the Truncated marker if any.
async fn drain(
    store: &Store,
    agent: AgentId,
    mut f: Follower,
    slow: bool,
) -> (Vec<Record>, Option<(Seq, Seq)>) {
    let mut out: Vec<Record> = Vec::new();
    let mut truncated = None;
    let mut n = 0u32;
    while let Some(item) = f.next().await {
        match item {
            FollowItem::Records(rs) => {
                assert!(!rs.is_empty(), "empty Records item");
                out.extend(rs);
            }
            FollowItem::Lag { from, to } => {
                let mut at = from;
                while at <= to {
                    let q = LogQuery {
                        since_seq: Some(at),
                        until_seq: Some(to.next()),
                        limit: 10_000,
                        ..LogQuery::default()
                    };
                    let r = store.read(agent, &q).expect("refill");
                    out.extend(r.records);
                    assert!(r.next_seq > at, "refill progresses");
                    at = r.next_seq;
                }
            }
            FollowItem::Truncated {
                requested,
                first_available,
            } => {
                assert!(
                    truncated.is_none() && out.is_empty(),
                    "Truncated comes first, once"
                );
                truncated = Some((requested, first_available));
            }
        }
        n += 1;
        if slow && n % 2 == 0 {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
        }
    }
    (out, truncated)
}

fn assert_exact(records: &[Record], from: u64, to: u64) {
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    assert_eq!(
        seqs,
        (from..=to).collect::<Vec<_>>(),
        "exactly {from}..={to}, once each, in order"
    );
    for r in records {
        assert_eq!(*r, rec(r.seq.0));
    }
}

#[tokio::test]
async fn follow_replays_then_goes_live_and_ends_on_close() {
    tokio::time::timeout(TIMEOUT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), common::small_config());
        let agent = AgentId::new();
        store.open_log(agent);
        store.append(agent, &recs(1, 300)).expect("append");
        let early = store.follow(agent, Seq(1)).expect("follow");
        let middle = store.follow(agent, Seq(250)).expect("follow");
        let future = store.follow(agent, Seq(700)).expect("follow");
        let tasks: Vec<_> = [(early, 1), (middle, 250), (future, 700)]
            .into_iter()
            .map(|(f, from)| {
                let store = store.clone();
                tokio::spawn(async move { (drain(&store, agent, f, false).await, from) })
            })
            .collect();
        for chunk in recs(301, 1000).chunks(25) {
            store.append(agent, chunk).expect("append");
            tokio::task::yield_now().await;
        }
        store.close_log(agent);
        for t in tasks {
            let ((records, truncated), from) = t.await.expect("task");
            assert_eq!(truncated, None);
            assert_exact(&records, from, 1000);
        }
        // A closed log: a new follower replays and ends.
        let (records, _) = drain(
            &store,
            agent,
            store.follow(agent, Seq(990)).expect("follow"),
            false,
        )
        .await;
        assert_exact(&records, 990, 1000);
        // An agent with no log at all is closed too.
        let mut none = store.follow(AgentId::new(), Seq(1)).expect("follow");
        assert_eq!(none.next().await, None);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn follow_from_removed_seq_says_truncated_then_continues() {
    tokio::time::timeout(TIMEOUT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            segment_bytes: 4096,
            agent_budget: 8192,
            ..StoreConfig::default()
        };
        let store = open(dir.path(), config);
        let agent = AgentId::new();
        store.open_log(agent);
        for chunk in recs(1, 2000).chunks(20) {
            store.append(agent, chunk).expect("append");
        }
        let first = store.log_bounds(agent).expect("bounds").first_seq;
        assert!(first > Seq(1));
        let f = store.follow(agent, Seq(3)).expect("follow");
        store.close_log(agent);
        let (records, truncated) = drain(&store, agent, f, false).await;
        assert_eq!(truncated, Some((Seq(3), first)));
        assert_exact(&records, first.0, 2000);
    })
    .await
    .expect("timed out");
}

#[derive(Debug, Clone)]
struct Plan {
    batches: Vec<u64>,
    followers: Vec<(usize, u64, bool)>, // (start after batch k, since, slow)
}

fn plan() -> impl Strategy<Value = Plan> {
    prop::collection::vec(1u64..40, 1..60).prop_flat_map(|batches| {
        let total: u64 = batches.iter().sum();
        let n = batches.len();
        let followers = prop::collection::vec((0..=n, 0..=total + 2, any::<bool>()), 1..6);
        (Just(batches), followers).prop_map(|(batches, followers)| Plan { batches, followers })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_follower_gets_since_to_n_exactly_once(plan in plan()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            tokio::time::timeout(TIMEOUT, run_plan(plan)).await.expect("timed out");
        });
    }
}

async fn run_plan(plan: Plan) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A tiny live buffer makes slow followers lag often.
    let config = StoreConfig {
        segment_bytes: 2048,
        follow_buffer: 2,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config);
    let agent = AgentId::new();
    store.open_log(agent);
    let total: u64 = plan.batches.iter().sum();
    let mut tasks = Vec::new();
    let mut next = 1u64;
    for (k, size) in plan.batches.iter().enumerate() {
        for &(_, since, slow) in plan.followers.iter().filter(|f| f.0 == k) {
            let f = store.follow(agent, Seq(since)).expect("follow");
            let store = store.clone();
            tasks.push((
                since,
                tokio::spawn(async move { drain(&store, agent, f, slow).await }),
            ));
        }
        store
            .append(agent, &recs(next, next + size - 1))
            .expect("append");
        next += size;
        if k % 3 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for &(_, since, slow) in plan.followers.iter().filter(|f| f.0 == plan.batches.len()) {
        let f = store.follow(agent, Seq(since)).expect("follow");
        let store = store.clone();
        tasks.push((
            since,
            tokio::spawn(async move { drain(&store, agent, f, slow).await }),
        ));
    }
    store.close_log(agent);
    for (since, task) in tasks {
        let (records, truncated) = task.await.expect("follower task");
        assert_eq!(truncated, None);
        let from = since.max(1);
        if from > total {
            assert!(records.is_empty());
        } else {
            assert_exact(&records, from, total);
        }
    }
}

#[tokio::test]
async fn lagging_follower_is_told_exactly_what_retention_removed() {
    tokio::time::timeout(TIMEOUT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            segment_bytes: 4096,
            agent_budget: 8192,
            follow_buffer: 1,
            ..StoreConfig::default()
        };
        let store = open(dir.path(), config);
        let agent = AgentId::new();
        store.open_log(agent);
        store.append(agent, &recs(1, 10)).expect("append");
        let mut f = store.follow(agent, Seq(1)).expect("follow");
        assert_eq!(f.next().await, Some(FollowItem::Records(recs(1, 10))));
        // The follower does not poll while 2000 records go by and retention trims the log.
        for chunk in recs(11, 2000).chunks(10) {
            store.append(agent, chunk).expect("append");
        }
        store.close_log(agent);
        let first = store.log_bounds(agent).expect("bounds").first_seq;
        assert!(first > Seq(11));
        assert_eq!(
            f.next().await,
            Some(FollowItem::Lag {
                from: Seq(11),
                to: Seq(first.0 - 1)
            })
        );
        let mut rest = Vec::new();
        while let Some(item) = f.next().await {
            match item {
                FollowItem::Records(rs) => rest.extend(rs),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_exact(&rest, first.0, 2000);
    })
    .await
    .expect("timed out");
}

#[tokio::test]
async fn slow_follower_behind_a_tiny_buffer_is_refilled_from_the_store() {
    tokio::time::timeout(TIMEOUT, async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            follow_buffer: 1,
            ..StoreConfig::default()
        };
        let store = open(dir.path(), config);
        let agent = AgentId::new();
        store.open_log(agent);
        let mut f = store.follow(agent, Seq(1)).expect("follow");
        store.append(agent, &recs(1, 5)).expect("append");
        assert_eq!(f.next().await, Some(FollowItem::Records(recs(1, 5))));
        // 500 batches overflow the one-batch buffer many times over; nothing may be missing.
        for chunk in recs(6, 5005).chunks(10) {
            store.append(agent, chunk).expect("append");
        }
        store.close_log(agent);
        let mut rest = Vec::new();
        while let Some(item) = f.next().await {
            match item {
                FollowItem::Records(rs) => rest.extend(rs),
                other => panic!("the store still has everything, got {other:?}"),
            }
        }
        assert_exact(&rest, 6, 5005);
    })
    .await
    .expect("timed out");
}
