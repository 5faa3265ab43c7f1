//! A restart completes histories a crash left incomplete (an older daemon stored a registry
//! change and its event separately, and was killed between the two).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use drover_proto::{AgentId, AgentInfo, AgentSpec, AgentStatus, Event, EventKind, EventSeq};
use drover_store::{Store, StoreConfig};

fn agent(status: AgentStatus, created_at: i64) -> AgentInfo {
    AgentInfo {
        id: AgentId::new(),
        name: None,
        backend: "command".into(),
        status,
        created_at,
        labels: Default::default(),
        spec: AgentSpec {
            argv: vec!["true".into()],
            ..AgentSpec::default()
        },
        activity: None,
        restarts: 0,
        timed_out: false,
    }
}

fn event(seq: u64, info: &AgentInfo, kind: EventKind, status: AgentStatus) -> Event {
    Event {
        event_seq: EventSeq(seq),
        ts: 1_000 + seq as i64,
        agent: info.id,
        kind,
        state: status.state(),
        exit_code: None,
        signal: None,
        dropped: None,
        activity: None,
        run: 1,
    }
}

#[tokio::test]
async fn a_restart_completes_histories_a_crash_cut_short() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let running = AgentStatus::Running {
            pid: 4_000_000,
            started_at: 1_001,
        };
        // Exited, but the crash came between its row and its `exit` event.
        let exited = agent(
            AgentStatus::Exited {
                code: 2,
                started_at: 1_001,
                ended_at: 1_005,
            },
            1_000,
        );
        // Failed to start, its terminal event missing.
        let failed = agent(
            AgentStatus::FailedToStart {
                error: "no such file".into(),
                ended_at: 1_006,
            },
            1_000,
        );
        // Recorded, but the crash came before its `spawned` event.
        let unannounced = agent(running.clone(), 1_010);
        {
            let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
            for info in [&exited, &failed, &unannounced] {
                store.insert_agent(info).unwrap();
            }
            store
                .append_event(&event(
                    1,
                    &exited,
                    EventKind::Spawned,
                    AgentStatus::Starting,
                ))
                .unwrap();
            store
                .append_event(&event(2, &exited, EventKind::State, running.clone()))
                .unwrap();
            store
                .append_event(&event(
                    3,
                    &failed,
                    EventKind::Spawned,
                    AgentStatus::Starting,
                ))
                .unwrap();
        }

        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |_| {}).await;
        let client = daemon.client().await;
        let read = client.read_events(Some(EventSeq(0)), None).await.unwrap();
        let seqs: Vec<u64> = read.events.iter().map(|e| e.event_seq.0).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        let history = |id: AgentId| -> Vec<(EventKind, Option<i32>)> {
            read.events
                .iter()
                .filter(|e| e.agent == id)
                .map(|e| (e.kind, e.exit_code))
                .collect()
        };
        assert_eq!(
            history(exited.id),
            [
                (EventKind::Spawned, None),
                (EventKind::State, None),
                (EventKind::Exit, Some(2))
            ]
        );
        assert_eq!(
            history(failed.id),
            [(EventKind::Spawned, None), (EventKind::Exit, None)]
        );
        assert_eq!(
            history(unannounced.id),
            [(EventKind::Spawned, None), (EventKind::Lost, None)]
        );
        // The rows are unchanged, apart from the live one now lost.
        let got = client.get(&exited.id.to_string()).await.unwrap();
        assert_eq!(got.status, exited.status);
        let got = client.get(&unannounced.id.to_string()).await.unwrap();
        assert_eq!(got.state(), drover_proto::AgentState::Lost);
        drop(client);
        daemon.shutdown().await;
    })
    .await
}
