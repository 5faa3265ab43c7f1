//! A real `drover serve` killed with SIGKILL in the middle of a spawn storm: after a restart
//! (which re-attaches to the holders and learns how their agents ended), every agent's event
//! history starts with `spawned` and ends with its terminal event, the stored events have no
//! holes, and every state matches its last event.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Daemon;
use drover_client::{Client, ClientOptions};
use drover_proto::op::ListArgs;
use drover_proto::{AgentId, AgentSpec, AgentState, Event, EventKind, EventSeq};

fn spec(i: usize) -> AgentSpec {
    let argv: Vec<String> = match i % 3 {
        // Fails to start: the registry records `failed_to_start` and its end.
        0 => vec!["/nonexistent/drover-test-program".into()],
        1 => vec!["sh".into(), "-c".into(), "exit 3".into()],
        _ => vec!["true".into()],
    };
    AgentSpec {
        argv,
        ..AgentSpec::default()
    }
}

async fn client(control: &str) -> Client {
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    Client::connect_with(control, options).await.unwrap()
}

async fn all_events(client: &Client) -> Vec<Event> {
    let mut events = Vec::new();
    let mut after = EventSeq(0);
    loop {
        let read = client.read_events(Some(after), Some(10_000)).await.unwrap();
        let Some(last) = read.events.last() else {
            return events;
        };
        after = last.event_seq;
        events.extend(read.events);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_killed_mid_spawn_storm_leaves_every_history_whole() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let control = daemon.control.clone();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut storm = Vec::new();
    for worker in 0..8 {
        let control = control.clone();
        let answered = Arc::clone(&answered);
        storm.push(tokio::spawn(async move {
            let client = client(&control).await;
            for i in 0.. {
                if client.spawn(spec(worker + i * 8)).await.is_err() {
                    return; // the daemon is gone
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill it while spawns, starts and exits are all in flight.
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while answered.load(Ordering::Relaxed) < 300 {
        assert!(tokio::time::Instant::now() < deadline, "the storm stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.crash();
    for worker in storm {
        tokio::time::timeout(common::TIMEOUT, worker)
            .await
            .unwrap()
            .unwrap();
    }

    let daemon = Daemon::start(dir.path());
    let client = client(&daemon.control).await;
    // Re-attached agents report their ends (every one exits at once) moments after the start.
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    let agents = loop {
        let agents = client.list(ListArgs::default()).await.unwrap();
        if agents.iter().all(|a| a.state().is_terminal()) {
            break agents;
        }
        assert!(tokio::time::Instant::now() < deadline, "agents still live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(agents.len() >= 300, "{} agents recorded", agents.len());
    let events = all_events(&client).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.event_seq.0).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "stored events have no holes"
    );
    let mut histories: BTreeMap<AgentId, Vec<&Event>> = BTreeMap::new();
    for event in &events {
        histories.entry(event.agent).or_default().push(event);
    }
    assert_eq!(
        histories.len(),
        agents.len(),
        "every agent has events, and only they"
    );
    for agent in &agents {
        let history = &histories[&agent.id];
        let kinds: Vec<EventKind> = history.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds[0],
            EventKind::Spawned,
            "agent {}: {kinds:?}",
            agent.id
        );
        let last = history.last().unwrap();
        let expected_end = match agent.state() {
            AgentState::Lost => EventKind::Lost,
            AgentState::Exited | AgentState::Killed | AgentState::FailedToStart => EventKind::Exit,
            other => panic!("agent {} is {other:?} after the restart", agent.id),
        };
        assert_eq!(last.kind, expected_end, "agent {}: {kinds:?}", agent.id);
        assert_eq!(last.state, agent.state(), "agent {}", agent.id);
        assert_eq!(
            last.exit_code,
            agent.status.exit_code(),
            "agent {}",
            agent.id
        );
    }
    drop(client);
    daemon.stop();
}
