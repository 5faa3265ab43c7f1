//! The registry side of the control protocol (health, list, names, remove, batch, limits,
//! invalid specs, stats, pruning), through the real daemon and the real client.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use drover_proto::op::{AgentRef, BatchArgs, ListArgs, ReadLogsArgs};
use drover_proto::{AgentSpec, AgentState, ErrorCode, Op};

#[tokio::test]
async fn health_reports_version_and_agents_by_state() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let health = client.health().await.unwrap();
        assert_eq!(health.protocol, 1);
        assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
        assert!(health.agents.is_empty());
        let agent = client.spawn(sh("exit 0")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        let health = client.health().await.unwrap();
        assert_eq!(health.agents.get("exited"), Some(&1));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn list_filters_by_state_and_labels_with_a_limit() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut ids = Vec::new();
        for (i, team) in ["a", "b", "a"].iter().enumerate() {
            let mut spec = sh(if i == 0 { "exit 0" } else { "sleep 100" });
            spec.labels.insert("team".into(), (*team).into());
            ids.push(client.spawn(spec).await.unwrap().id);
        }
        client.wait(&ids[0].to_string(), None).await.unwrap();
        let all = client.list(ListArgs::default()).await.unwrap();
        assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
        let running = client
            .list(ListArgs {
                state: Some(AgentState::Running),
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(running.iter().map(|a| a.id).collect::<Vec<_>>(), ids[1..]);
        let team_a = client
            .list(ListArgs {
                labels: BTreeMap::from([("team".to_owned(), "a".to_owned())]),
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(
            team_a.iter().map(|a| a.id).collect::<Vec<_>>(),
            vec![ids[0], ids[2]]
        );
        let first = client
            .list(ListArgs {
                limit: Some(1),
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id, ids[0]);
        // Each label is a condition of the registry's query: at most 32 of them.
        let many = |n: usize| ListArgs {
            labels: (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
            ..ListArgs::default()
        };
        let limit = drover_proto::limits::MAX_LIST_LABELS;
        assert!(client.list(many(limit)).await.unwrap().is_empty());
        assert_eq!(
            code(client.list(many(limit + 1)).await),
            ErrorCode::BadRequest
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn agents_are_named_by_id_prefix_or_name() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("sleep 100");
        spec.name = Some("worker".into());
        let agent = client.spawn(spec.clone()).await.unwrap();
        let id = agent.id.to_string();
        assert_eq!(client.get(&id).await.unwrap().id, agent.id);
        assert_eq!(client.get("worker").await.unwrap().id, agent.id);
        assert_eq!(client.get(&id[..30]).await.unwrap().id, agent.id);
        assert_eq!(code(client.get("no-such-agent").await), ErrorCode::NotFound);
        // A live agent's name is taken.
        assert_eq!(
            code(client.spawn(spec.clone()).await),
            ErrorCode::InvalidState
        );
        // Invalid names are refused.
        let mut bad = spec.clone();
        bad.name = Some("has space".into());
        assert_eq!(code(client.spawn(bad).await), ErrorCode::BadRequest);
        // Once it ended the name is free again.
        client.kill("worker").await.unwrap();
        client.wait(&id, None).await.unwrap();
        let again = client.spawn(spec).await.unwrap();
        assert_ne!(again.id, agent.id);
        assert_eq!(client.get("worker").await.unwrap().id, again.id);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn remove_only_terminal_agents() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("echo hi; sleep 100")).await.unwrap();
        let id = agent.id.to_string();
        assert_eq!(code(client.remove(&id).await), ErrorCode::InvalidState);
        client.kill(&id).await.unwrap();
        client.wait(&id, None).await.unwrap();
        client.remove(&id).await.unwrap();
        assert_eq!(code(client.get(&id).await), ErrorCode::NotFound);
        assert_eq!(
            code(
                client
                    .read_logs(ReadLogsArgs::new(AgentRef::new(id.clone())))
                    .await
            ),
            ErrorCode::NotFound
        );
        assert_eq!(code(client.remove(&id).await), ErrorCode::NotFound);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn batch_applies_one_op_per_agent() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let a = client.spawn(sh("sleep 100")).await.unwrap();
        let b = client.spawn(sh("sleep 100")).await.unwrap();
        let refs = vec![
            AgentRef::new(a.id.to_string()),
            AgentRef::new("missing"),
            AgentRef::new(b.id.to_string()),
        ];
        let result = client
            .batch(BatchArgs {
                op: Op::Pause,
                agents: refs.clone(),
                args: BTreeMap::new(),
                fail_fast: false,
            })
            .await
            .unwrap();
        let oks: Vec<bool> = result.results.iter().map(|r| r.ok).collect();
        assert_eq!(oks, vec![true, false, true]);
        assert_eq!(
            result.results[1].error.as_ref().unwrap().code,
            ErrorCode::NotFound
        );
        assert_eq!(
            result.results[0].info.as_ref().unwrap().state(),
            AgentState::Paused
        );
        let result = client
            .batch(BatchArgs {
                op: Op::Signal,
                agents: refs.clone(),
                args: BTreeMap::from([("signal".to_owned(), rmpv::Value::from("KILL"))]),
                fail_fast: true,
            })
            .await
            .unwrap();
        assert_eq!(
            result.results.len(),
            2,
            "fail_fast stops at the first failure"
        );
        assert!(result.results[0].ok);
        assert_eq!(
            client
                .batch(BatchArgs {
                    op: Op::Spawn,
                    agents: refs,
                    args: BTreeMap::new(),
                    fail_fast: false,
                })
                .await
                .map(|_| ())
                .unwrap_err()
                .code(),
            Some(ErrorCode::BadRequest)
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn limits_and_backend_allow_list() {
    within(async {
        let daemon = TestDaemon::start_with(|config| {
            config.max_agents = 1;
            config.allowed_backends = Some(vec!["command".into()]);
        })
        .await;
        let client = daemon.client().await;
        let first = client.spawn(sh("sleep 100")).await.unwrap();
        assert_eq!(
            code(client.spawn(sh("sleep 100")).await),
            ErrorCode::LimitReached
        );
        client.kill(&first.id.to_string()).await.unwrap();
        client.wait(&first.id.to_string(), None).await.unwrap();
        let second = client.spawn(sh("exit 0")).await.unwrap();
        client.wait(&second.id.to_string(), None).await.unwrap();
        let claude = AgentSpec {
            backend: Some("claude".into()),
            task: Some("hello".into()),
            ..AgentSpec::default()
        };
        assert_eq!(code(client.spawn(claude).await), ErrorCode::Unauthorized);
        // A backend that does not exist is a typo, said as such, not a refusal.
        let typo = AgentSpec {
            backend: Some("cladue".into()),
            task: Some("hello".into()),
            ..AgentSpec::default()
        };
        match client.spawn(typo).await {
            Err(drover_client::ClientError::Remote(e)) => {
                assert_eq!(e.code, ErrorCode::BadRequest);
                assert!(
                    e.message.contains("unknown backend \"cladue\""),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected bad_request, got {other:?}"),
        }
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn invalid_specs_are_refused() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let cases = [
            AgentSpec::default(),
            AgentSpec {
                backend: Some("no-such-backend".into()),
                ..sh("true")
            },
            AgentSpec {
                backend: Some("claude".into()),
                ..AgentSpec::default()
            },
            AgentSpec {
                cwd: Some("relative/dir".into()),
                ..sh("true")
            },
            AgentSpec {
                env: BTreeMap::from([("A=B".to_owned(), "x".to_owned())]),
                ..sh("true")
            },
            AgentSpec {
                timeout_ms: Some(0),
                ..sh("true")
            },
            AgentSpec {
                log_budget: Some(u64::MAX),
                ..sh("true")
            },
            AgentSpec {
                log_budget: Some(10),
                ..sh("true")
            },
            // A task that an agent CLI would parse as one of its own options.
            AgentSpec {
                backend: Some("claude".into()),
                task: Some("--dangerously-skip-permissions".into()),
                ..AgentSpec::default()
            },
        ];
        for spec in cases {
            assert_eq!(
                code(client.spawn(spec.clone()).await),
                ErrorCode::BadRequest,
                "{spec:?}"
            );
        }
        assert!(client.list(ListArgs::default()).await.unwrap().is_empty());
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn stream_info_and_stats() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("echo hi")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        let info = client
            .stream_info(Some(&agent.id.to_string()))
            .await
            .unwrap();
        assert_eq!(info.pub_endpoint, daemon.addresses.publish);
        assert!(info.pub_endpoint.starts_with("tcp://127.0.0.1:"));
        assert_eq!(
            info.topics,
            vec![format!("log.{}", agent.id), format!("evt.{}", agent.id)]
        );
        assert_eq!(info.heartbeat, "hb");
        let all = client.stream_info(None).await.unwrap();
        assert_eq!(all.topics, vec!["log.".to_owned(), "evt.".to_owned()]);
        let _ = client.get("missing").await;
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.spawns, 1);
        assert_eq!(stats.records, 1);
        assert_eq!(stats.bytes, 3);
        assert_eq!(stats.agents_total, 1);
        assert_eq!(stats.agents_live, 0);
        assert_eq!(stats.requests.get("spawn"), Some(&1));
        assert_eq!(stats.errors.get("not_found"), Some(&1));
        assert!(stats.events >= 3, "spawned, running, exit");
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn ended_agents_beyond_the_limit_are_removed_oldest_first() {
    within(async {
        let daemon = TestDaemon::start_with(|config| config.max_ended_agents = 2).await;
        let client = daemon.client().await;
        let live = client.spawn(sh("sleep 100")).await.unwrap();
        let mut ended = Vec::new();
        for _ in 0..4 {
            let agent = client.spawn(sh("echo hi")).await.unwrap();
            client.wait(&agent.id.to_string(), None).await.unwrap();
            ended.push(agent.id);
        }
        let kept = wait_for("the oldest ended agents to be removed", || async {
            let agents = client.list(ListArgs::default()).await.unwrap();
            (agents.len() == 3).then_some(agents)
        })
        .await;
        let ids: Vec<_> = kept.iter().map(|a| a.id).collect();
        assert_eq!(
            ids,
            vec![live.id, ended[2], ended[3]],
            "live agents are never pruned"
        );
        assert_eq!(
            code(
                client
                    .read_logs(ReadLogsArgs::new(AgentRef::new(ended[0].to_string())))
                    .await
            ),
            ErrorCode::NotFound,
            "their logs went with them"
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_oversize_spec_is_too_large() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("true");
        spec.context = Some("x".repeat(drover_proto::limits::MAX_SPEC_BYTES + 1));
        assert_eq!(code(client.spawn(spec).await), ErrorCode::TooLarge);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn read_events_after_a_number_past_any_event_is_empty_not_the_first_page() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("exit 0")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        let all = client
            .read_events(Some(drover_proto::EventSeq(0)), None)
            .await
            .unwrap();
        assert!(!all.events.is_empty());
        // SQLite numbers are i64: 2^63 and more once read back as "after -1", every event.
        for after in [all.last_event_seq.0, 1 << 63, u64::MAX] {
            let read = client
                .read_events(Some(drover_proto::EventSeq(after)), None)
                .await
                .unwrap();
            assert_eq!(read.events, Vec::new(), "after {after}");
            assert_eq!(read.last_event_seq, all.last_event_seq);
        }
        daemon.shutdown().await;
    })
    .await
}
