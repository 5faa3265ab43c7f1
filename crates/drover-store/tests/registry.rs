//! Registry: agents and events survive reopen; list order, filters, resolve.

mod common;

use std::collections::BTreeMap;

use common::{agent_info, open};
use drover_proto::{AgentState, AgentStatus, Event, EventKind, EventSeq, Runs};
use drover_store::{ListFilter, StoreConfig, StoreError};

#[test]
fn registry_survives_reopen_with_filters_order_and_resolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ids = Vec::new();
    {
        let store = open(dir.path(), StoreConfig::default());
        for i in 0..6i64 {
            let mut info = agent_info(
                Some(&format!("agent-{i}")),
                1_000 + i,
                AgentStatus::Starting,
            );
            info.labels.insert(
                "team".into(),
                if i % 2 == 0 { "red" } else { "blue" }.into(),
            );
            info.labels.insert("n".into(), i.to_string());
            store.insert_agent(&info).expect("insert");
            ids.push(info.id);
        }
        store
            .update_status(
                ids[1],
                &AgentStatus::Running {
                    pid: 42,
                    started_at: 5,
                },
                Runs::default(),
            )
            .expect("update");
        store
            .update_status(
                ids[2],
                &AgentStatus::Exited {
                    code: 3,
                    started_at: 5,
                    ended_at: 9,
                },
                Runs::default(),
            )
            .expect("update");
        store
            .update_status(
                ids[3],
                &AgentStatus::Lost {
                    pid: None,
                    started_at: None,
                    ended_at: 9,
                    error: None,
                },
                Runs::default(),
            )
            .expect("update");
    }
    let store = open(dir.path(), StoreConfig::default());
    let all = store.list(&ListFilter::default()).expect("list");
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids,
        "creation order"
    );
    assert_eq!(
        all[1].status,
        AgentStatus::Running {
            pid: 42,
            started_at: 5
        }
    );
    assert_eq!(
        all[2].status,
        AgentStatus::Exited {
            code: 3,
            started_at: 5,
            ended_at: 9
        }
    );
    assert_eq!(all[0].spec.argv, vec!["echo", "hi"]);
    assert_eq!(all[0].labels["team"], "red");

    let running = ListFilter {
        state: Some(AgentState::Running),
        ..ListFilter::default()
    };
    assert_eq!(store.list(&running).expect("list").len(), 1);
    let red = ListFilter {
        labels: BTreeMap::from([("team".to_owned(), "red".to_owned())]),
        limit: Some(2),
        ..ListFilter::default()
    };
    let red = store.list(&red).expect("list");
    assert_eq!(
        red.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2]]
    );
    let two_labels = ListFilter {
        labels: BTreeMap::from([("team".into(), "blue".into()), ("n".into(), "3".into())]),
        ..ListFilter::default()
    };
    assert_eq!(store.list(&two_labels).expect("list")[0].id, ids[3]);

    let live = store.live_agents().expect("live");
    assert_eq!(
        live.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![ids[0], ids[1], ids[4], ids[5]]
    );
    let counts = store.count_by_state().expect("counts");
    assert_eq!(counts[&AgentState::Starting], 3);
    assert_eq!(counts[&AgentState::Lost], 1);

    assert_eq!(
        store.resolve(&ids[4].to_string()).expect("by id").id,
        ids[4]
    );
    let full = ids[4].to_string();
    // v7 ids created together share their leading (time) digits: a short prefix is ambiguous,
    // the full random tail is unique.
    assert_eq!(store.resolve(&full[..30]).expect("by prefix").id, ids[4]);
    match store.resolve(&full[..4]) {
        // (At least: a random handle may start with the same 4 digits too.)
        Err(StoreError::Ambiguous { count, .. }) => assert!(count >= 6, "{count}"),
        other => panic!("expected ambiguous, got {other:?}"),
    }
    assert_eq!(store.resolve("agent-5").expect("by name").id, ids[5]);
    assert!(matches!(
        store.resolve("nobody"),
        Err(StoreError::NotFound(_))
    ));

    store.remove_agent(ids[0]).expect("remove");
    assert!(store.agent(ids[0]).expect("get").is_none());
    assert!(matches!(
        store.remove_agent(ids[0]),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn names_unique_among_live_agents_newest_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let first = agent_info(Some("worker"), 1, AgentStatus::Starting);
    store.insert_agent(&first).expect("insert");
    let clash = agent_info(Some("worker"), 2, AgentStatus::Starting);
    assert!(matches!(
        store.insert_agent(&clash),
        Err(StoreError::NameTaken(_))
    ));
    store
        .update_status(
            first.id,
            &AgentStatus::FailedToStart {
                error: "nope".into(),
                ended_at: 3,
            },
            Runs::default(),
        )
        .expect("update");
    store
        .insert_agent(&clash)
        .expect("name is free once the first is terminal");
    assert_eq!(store.resolve("worker").expect("resolve").id, clash.id);
    let old = store.agent(first.id).expect("get").expect("exists");
    assert_eq!(
        old.status,
        AgentStatus::FailedToStart {
            error: "nope".into(),
            ended_at: 3
        }
    );
}

#[test]
fn events_are_kept_newest_first_and_resumable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        max_events: 10,
        ..StoreConfig::default()
    };
    let agent = agent_info(None, 1, AgentStatus::Starting).id;
    {
        let store = open(dir.path(), config.clone());
        assert_eq!(store.last_event_seq().expect("last"), EventSeq(0));
        for seq in 1..=25 {
            let event = Event {
                event_seq: EventSeq(seq),
                ts: seq as i64,
                agent,
                kind: if seq == 25 {
                    EventKind::Exit
                } else {
                    EventKind::State
                },
                state: if seq == 25 {
                    AgentState::Exited
                } else {
                    AgentState::Running
                },
                exit_code: (seq == 25).then_some(0),
                signal: None,
                dropped: None,
                activity: None,
                run: 1,
            };
            store.append_event(&event).expect("append event");
        }
    }
    let store = open(dir.path(), config);
    assert_eq!(store.last_event_seq().expect("last"), EventSeq(25));
    let all = store.events_since(EventSeq(0), 100).expect("events");
    assert_eq!(
        all.iter().map(|e| e.event_seq.0).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<_>>()
    );
    let tail = store.events_since(EventSeq(22), 2).expect("events");
    assert_eq!(
        tail.iter().map(|e| e.event_seq.0).collect::<Vec<_>>(),
        vec![23, 24]
    );
    assert_eq!(all.last().expect("last").exit_code, Some(0));
    assert_eq!(all.last().expect("last").kind, EventKind::Exit);
}

#[test]
fn short_handles_resolve_and_are_unique() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let mut first = agent_info(None, 1, AgentStatus::Starting);
    first.id = "01a23676-5000-7000-8000-0000deadbeef"
        .parse()
        .expect("uuid");
    store.insert_agent(&first).expect("insert");
    // Same first 8 characters, another handle: both resolve by handle, exactly.
    let mut second = agent_info(None, 2, AgentStatus::Starting);
    second.id = "01a23676-5001-7000-8000-00000badf00d"
        .parse()
        .expect("uuid");
    store.insert_agent(&second).expect("insert");
    assert_eq!(first.id.handle(), "deadbeef");
    assert_eq!(store.resolve("deadbeef").expect("by handle").id, first.id);
    assert_eq!(store.resolve("0BADF00D").expect("any case").id, second.id);
    // The shared prefix alone is ambiguous, as before.
    assert!(store.resolve("01a23676").is_err());
    // The start of a handle (what `ls` shows) is enough when it is unique.
    assert_eq!(store.resolve("dead").expect("handle start").id, first.id);
    assert_eq!(store.resolve("0BADF").expect("any case").id, second.id);
    let mut third = agent_info(None, 4, AgentStatus::Starting);
    third.id = "01a23676-5003-7000-8000-0000deadf00d"
        .parse()
        .expect("uuid");
    store.insert_agent(&third).expect("insert");
    match store.resolve("dead") {
        Err(StoreError::Ambiguous { count, .. }) => assert_eq!(count, 2),
        other => panic!("expected ambiguous, got {other:?}"),
    }
    assert_eq!(store.resolve("deadf").expect("longer").id, third.id);
    // A whole handle wins over a name (a spawn refuses such names; the store may hold one from
    // before); a name wins over the start of a handle, as docker resolves a name before an id
    // prefix.
    let mut named = agent_info(Some("deadbeef"), 5, AgentStatus::Starting);
    named.id = "01a23676-5004-7000-8000-000000c0ffee"
        .parse()
        .expect("uuid");
    store.insert_agent(&named).expect("insert");
    assert_eq!(store.resolve("deadbeef").expect("by handle").id, first.id);
    let mut short = agent_info(Some("dead"), 6, AgentStatus::Starting);
    short.id = "01a23676-5005-7000-8000-000000c0fffe"
        .parse()
        .expect("uuid");
    store.insert_agent(&short).expect("insert");
    assert_eq!(store.resolve("dead").expect("by name").id, short.id);
    assert_eq!(
        store.resolve(&first.id.to_string()).expect("by id").id,
        first.id
    );
    // A third agent with a handle already taken is refused by the registry.
    let mut clash = agent_info(None, 3, AgentStatus::Starting);
    clash.id = "01a23676-5002-7000-8000-0000deadbeef"
        .parse()
        .expect("uuid");
    assert!(store.insert_agent(&clash).is_err());
    // A fresh id never takes a handle in use.
    let fresh = store.fresh_id().expect("fresh id");
    assert_ne!(fresh.handle(), first.id.handle());
    assert_ne!(fresh.handle(), second.id.handle());
}

#[test]
fn a_store_made_under_a_lax_umask_is_narrowed_to_its_user_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    {
        let store = open(dir.path(), StoreConfig::default());
        let info = agent_info(Some("a"), 1_000, AgentStatus::Starting);
        store.insert_agent(&info).expect("insert");
    }
    // As an older version left them under umask 022.
    let registry = dir.path().join("registry.sqlite3");
    let logs = dir.path().join("logs");
    for (path, lax) in [(&registry, 0o644), (&logs, 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(lax)).expect("chmod");
    }
    let store = open(dir.path(), StoreConfig::default());
    assert_eq!(mode(&registry), 0o600);
    assert_eq!(mode(&logs), 0o700);
    // The write-ahead log SQLite makes next to it takes the database file's mode.
    let info = agent_info(Some("b"), 2_000, AgentStatus::Starting);
    store.insert_agent(&info).expect("insert");
    assert_eq!(mode(&dir.path().join("registry.sqlite3-wal")), 0o600);
}
