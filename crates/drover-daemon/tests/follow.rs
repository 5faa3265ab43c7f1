//! Live following over PUB/SUB: every reader ends with exactly the records the agent printed,
//! once each, in order, however late it starts and however slow it is.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use drover_client::follow::Selection;
use drover_client::{Client, FollowEvent, FollowOptions};
use drover_proto::{AgentId, AgentInfo, AgentState, RecordBatch, Seq, StdinMode};

/// Everything a follower yields until it ends: records per agent, gaps seen, exits.
#[derive(Default)]
struct Collected {
    records: HashMap<AgentId, Vec<(u64, Vec<u8>)>>,
    gaps: usize,
    exits: Vec<AgentInfo>,
}

async fn collect(client: &Client, selection: Selection, options: FollowOptions) -> Collected {
    let mut follower = client.follow(selection, options).await.unwrap();
    let mut collected = Collected::default();
    while let Some(event) = follower.next().await.unwrap() {
        absorb(&mut collected, event);
    }
    collected
}

fn absorb(collected: &mut Collected, event: FollowEvent) {
    match event {
        FollowEvent::Records { agent, records } => collected
            .records
            .entry(agent)
            .or_default()
            .extend(records.into_iter().map(|r| (r.seq.0, r.data))),
        FollowEvent::Gap { .. } => collected.gaps += 1,
        FollowEvent::Exit(info) => collected.exits.push(*info),
        FollowEvent::Truncated { .. } => panic!("nothing was removed"),
        FollowEvent::Dropped { .. } => panic!("nothing was dropped"),
    }
}

fn until_exit() -> FollowOptions {
    FollowOptions {
        until_exit: true,
        ..FollowOptions::default()
    }
}

/// Assert records are exactly `1..=n` with the lines `seq` prints (after `skip` other lines).
fn assert_counting(records: &[(u64, Vec<u8>)], skip: usize, n: usize) {
    let seqs: Vec<u64> = records.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (1..=(skip + n) as u64).collect();
    if seqs != expected {
        let first_bad = seqs.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "seqs are not exactly 1..={} (got {} records; first difference at {:?}: {:?})",
            skip + n,
            seqs.len(),
            first_bad,
            first_bad.map(|i| &seqs[i.saturating_sub(2)..(i + 3).min(seqs.len())])
        );
    }
    for (i, (_, data)) in records.iter().skip(skip).enumerate() {
        assert_eq!(data, format!("{}\n", i + 1).as_bytes());
    }
}

#[tokio::test]
async fn a_follower_starting_while_the_agent_writes_gets_exactly_1_to_n() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let n = 20_000;
        let agent = client.spawn(sh(&format!("seq 1 {n}"))).await.unwrap();
        let collected = collect(
            &client,
            Selection::Agents(vec![agent.id.to_string()]),
            until_exit(),
        )
        .await;
        assert_counting(&collected.records[&agent.id], 0, n);
        assert_eq!(collected.exits.len(), 1);
        assert_eq!(collected.exits[0].state(), AgentState::Exited);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_follower_that_stops_reading_is_told_of_gaps_and_still_gets_everything() {
    within(async {
        // A one-message publish queue drops most live batches of a fast writer.
        let daemon = TestDaemon::start_with(|config| config.pub_queue = 1).await;
        let client = daemon.client().await;
        let n = 100_000;
        let mut spec = sh(&format!("echo ready; read go; seq 1 {n}"));
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        let mut follower = client
            .follow(Selection::Agents(vec![id.clone()]), until_exit())
            .await
            .unwrap();
        let mut collected = Collected::default();
        // Read until the ready line arrived, so the follower is live.
        while collected
            .records
            .get(&agent.id)
            .is_none_or(|r| r.is_empty())
        {
            let event = follower.next().await.unwrap().expect("an event");
            absorb(&mut collected, event);
        }
        // Stop reading while the agent writes everything and exits.
        client.write_stdin(&id, b"go\n".to_vec()).await.unwrap();
        client.wait(&id, None).await.unwrap();
        while let Some(event) = follower.next().await.unwrap() {
            absorb(&mut collected, event);
        }
        assert_counting(&collected.records[&agent.id], 1, n);
        assert!(
            collected.gaps > 0,
            "the dropped batches were reported as gaps"
        );
        assert_eq!(collected.exits.len(), 1);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn several_followers_see_identical_sequences() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let n = 5_000;
        let agent = client
            .spawn(sh(&format!("echo ready; sleep 0.2; seq 1 {n}")))
            .await
            .unwrap();
        let selection = || Selection::Agents(vec![agent.id.to_string()]);
        let (a, b, c) = tokio::join!(
            collect(&client, selection(), until_exit()),
            collect(&client, selection(), until_exit()),
            collect(&client, selection(), until_exit()),
        );
        assert_counting(&a.records[&agent.id], 1, n);
        assert_eq!(a.records, b.records);
        assert_eq!(a.records, c.records);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn subscribing_to_one_agent_never_yields_another() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("read go; seq 1 2000");
        spec.stdin = StdinMode::Pipe;
        let a = client.spawn(spec.clone()).await.unwrap();
        let b = client.spawn(spec).await.unwrap();
        let info = client.stream_info(Some(&a.id.to_string())).await.unwrap();
        let socket = zmq::Context::new().socket(zmq::SUB).unwrap();
        socket.set_subscribe(info.topics[0].as_bytes()).unwrap();
        socket.set_subscribe(info.heartbeat.as_bytes()).unwrap();
        daemon.secure(&socket);
        socket.connect(&info.pub_endpoint).unwrap();
        let mut socket = Raw(drover_zmq::Async::new(socket).unwrap());
        // A heartbeat proves the subscriptions are live before the agents write.
        loop {
            let frames = socket.recv().await;
            if frames[0] == b"hb" {
                break;
            }
        }
        for agent in [&b, &a] {
            client
                .write_stdin(&agent.id.to_string(), b"go\n".to_vec())
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < 2000 {
            let frames = socket.recv().await;
            if frames[0] == b"hb" {
                continue;
            }
            assert_eq!(frames[0], format!("log.{}", a.id).into_bytes());
            let batch: RecordBatch = drover_proto::decode(&frames[1], usize::MAX).unwrap();
            assert_eq!(batch.agent, a.id);
            seen.extend(batch.records.into_iter().map(|r| r.seq.0));
        }
        assert_eq!(seen, (1..=2000).collect::<Vec<u64>>());
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_label_follow_keeps_each_agents_order_and_finds_new_agents() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let labelled = |script: &str| {
            let mut spec = sh(script);
            spec.labels.insert("job".into(), "x".into());
            spec
        };
        let first = client.spawn(labelled("seq 1 3000")).await.unwrap();
        let other = client.spawn(sh("seq 1 10")).await.unwrap();
        let mut follower = client
            .follow(
                Selection::Labels(BTreeMap::from([("job".to_owned(), "x".to_owned())])),
                FollowOptions::default(),
            )
            .await
            .unwrap();
        let second = client.spawn(labelled("seq 1 3000")).await.unwrap();
        let mut collected = Collected::default();
        while collected.exits.len() < 2 {
            let event = follower
                .next()
                .await
                .unwrap()
                .expect("open follows never end");
            absorb(&mut collected, event);
        }
        assert!(!collected.records.contains_key(&other.id));
        assert_counting(&collected.records[&first.id], 0, 3000);
        assert_counting(&collected.records[&second.id], 0, 3000);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn tail_zero_gives_only_new_lines() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("echo old; read go; echo new");
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        wait_for("the old line", || async {
            (!all_records(&client, &agent).await.is_empty()).then_some(())
        })
        .await;
        let id = agent.id.to_string();
        let mut follower = client
            .follow(
                Selection::Agents(vec![id.clone()]),
                FollowOptions {
                    tail: Some(0),
                    until_exit: true,
                    ..FollowOptions::default()
                },
            )
            .await
            .unwrap();
        client.write_stdin(&id, b"go\n".to_vec()).await.unwrap();
        let mut collected = Collected::default();
        while let Some(event) = follower.next().await.unwrap() {
            absorb(&mut collected, event);
        }
        assert_eq!(collected.records[&agent.id], vec![(2, b"new\n".to_vec())]);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn after_a_restart_a_follower_of_a_finished_agent_gets_its_full_history() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |_| {}).await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("seq 1 1000; exit 5")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        drop(client);
        daemon.shutdown().await;

        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |_| {}).await;
        let client = daemon.client().await;
        let collected = collect(
            &client,
            Selection::Agents(vec![agent.id.to_string()]),
            FollowOptions {
                since_seq: Some(Seq::FIRST),
                until_exit: true,
                ..FollowOptions::default()
            },
        )
        .await;
        assert_counting(&collected.records[&agent.id], 0, 1000);
        assert_eq!(collected.exits[0].status.exit_code(), Some(5));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn event_follow_resumes_from_an_event_seq_and_continues_live() {
    use drover_proto::{EventKind, EventSeq};
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let first = client.spawn(sh("exit 3")).await.unwrap();
        client.wait(&first.id.to_string(), None).await.unwrap();
        let mut events = client.follow_events(None).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.push(events.next().await.unwrap());
        }
        let kinds: Vec<EventKind> = seen.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Spawned, EventKind::State, EventKind::Exit]
        );
        assert_eq!(seen[2].exit_code, Some(3));
        let numbers: Vec<u64> = seen.iter().map(|e| e.event_seq.0).collect();
        assert_eq!(numbers, vec![1, 2, 3]);

        // Live: a second agent's events arrive next, numbered on.
        let second = client.spawn(sh("exit 0")).await.unwrap();
        while seen.len() < 6 {
            seen.push(events.next().await.unwrap());
        }
        assert!(seen[3..].iter().all(|e| e.agent == second.id));
        let numbers: Vec<u64> = seen.iter().map(|e| e.event_seq.0).collect();
        assert_eq!(numbers, (1..=6).collect::<Vec<u64>>());

        // Resuming after event 4 gives exactly 5 and 6 first.
        let mut resumed = client.follow_events(Some(EventSeq(4))).await.unwrap();
        assert_eq!(resumed.next().await.unwrap().event_seq, EventSeq(5));
        assert_eq!(resumed.next().await.unwrap().event_seq, EventSeq(6));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn shutdown_stops_agents_even_one_that_ignores_sigterm() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |config| {
            config.default_grace = std::time::Duration::from_millis(300);
        })
        .await;
        let client = daemon.client().await;
        let stubborn = client
            .spawn(sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"))
            .await
            .unwrap();
        let polite = client.spawn(sh("sleep 100")).await.unwrap();
        wait_ready(&client, &stubborn).await;
        drop(client);
        daemon.shutdown().await;
        // A new daemon on the same directory sees how they ended: nothing is lost or live.
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |_| {}).await;
        let client = daemon.client().await;
        let stubborn = client.get(&stubborn.id.to_string()).await.unwrap();
        assert_eq!(stubborn.state(), AgentState::Killed);
        assert_eq!(stubborn.status.signal(), Some(9));
        let polite = client.get(&polite.id.to_string()).await.unwrap();
        assert_eq!(polite.state(), AgentState::Killed, "{polite:?}");
        assert_eq!(polite.status.signal(), Some(15));
        daemon.shutdown().await;
    })
    .await
}
