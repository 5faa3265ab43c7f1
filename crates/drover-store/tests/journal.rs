//! Registry changes with their events: one transaction each, numbered by the store, and a
//! dropped range that reads, follows and a reopened store all report.

mod common;

use common::{agent_info, open, recs, TIMEOUT};
use drover_proto::{AgentState, AgentStatus, Event, EventKind, EventSeq, Seq, SeqRange};
use drover_store::{Change, FollowItem, LogQuery, StoreConfig, StoreError};

fn event(kind: EventKind, info: &drover_proto::AgentInfo) -> Event {
    Event {
        event_seq: EventSeq(0),
        ts: 1,
        agent: info.id,
        kind,
        state: info.state(),
        exit_code: info.status.exit_code(),
        signal: info.status.signal(),
        dropped: None,
        activity: None,
        run: 1,
    }
}

#[test]
fn a_refused_change_stores_nothing_and_consumes_no_event_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let first = agent_info(Some("twin"), 1, AgentStatus::Starting);
    let stored = store
        .commit(
            Change::Insert(Box::new(first.clone())),
            event(EventKind::Spawned, &first),
        )
        .expect("insert");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_seq, EventSeq(1));
    assert_eq!(stored[0].kind, EventKind::Spawned);

    // A live agent holds the name: neither the row nor its event is stored, no number is used.
    let second = agent_info(Some("twin"), 2, AgentStatus::Starting);
    let refused = store.commit(
        Change::Insert(Box::new(second.clone())),
        event(EventKind::Spawned, &second),
    );
    assert!(
        matches!(refused, Err(StoreError::NameTaken(_))),
        "{refused:?}"
    );
    assert!(store.agent(second.id).expect("lookup").is_none());

    let mut ended = first.clone();
    ended.status = AgentStatus::Exited {
        code: 7,
        started_at: 1,
        ended_at: 2,
    };
    let stored = store
        .commit(
            Change::Status(first.id, ended.status.clone(), ended.runs()),
            event(EventKind::Exit, &ended),
        )
        .expect("status");
    assert_eq!(stored[0].event_seq, EventSeq(2));
    let events = store.events_since(EventSeq(0), 10).expect("events");
    assert_eq!(
        events
            .iter()
            .map(|e| (e.event_seq.0, e.kind))
            .collect::<Vec<_>>(),
        [(1, EventKind::Spawned), (2, EventKind::Exit)]
    );
    assert_eq!(
        store.agent(first.id).expect("lookup").expect("row").state(),
        AgentState::Exited
    );
    assert_eq!(store.last_event_seq().expect("last"), EventSeq(2));

    // Removing an agent that is not there stores no `removed` event.
    let gone = store.commit(
        Change::Remove(second.id),
        event(EventKind::Removed, &second),
    );
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
    assert_eq!(store.last_event_seq().expect("last"), EventSeq(2));
}

#[tokio::test]
async fn a_dropped_range_ends_reads_and_follows_explicitly_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let info = agent_info(None, 1, AgentStatus::Starting);
    let range = SeqRange {
        from: Seq(11),
        to: Seq(500),
    };
    {
        let store = open(dir.path(), StoreConfig::default());
        store
            .commit(
                Change::Insert(Box::new(info.clone())),
                event(EventKind::Spawned, &info),
            )
            .expect("insert");
        store.append(info.id, &recs(1, 10)).expect("append");
        let mut dropped = event(EventKind::LogDropped, &info);
        dropped.dropped = Some(range);
        let committed = store.commit_or_queue(Change::LogDropped(info.id, range), dropped);
        assert!(committed.queued.is_none());
        assert_eq!(committed.stored.len(), 1);
        assert_eq!(committed.stored[0].dropped, Some(range));
        store.close_log(info.id);

        let read = store.read(info.id, &LogQuery::default()).expect("read");
        assert_eq!(read.records.len(), 10);
        assert_eq!(read.dropped, Some(range));
        assert_eq!(read.next_seq, Seq(501));
        assert_eq!(
            store.log_bounds(info.id).expect("bounds").next_seq,
            Seq(501)
        );

        let mut follower = store.follow(info.id, Seq(1)).expect("follow");
        let mut items = Vec::new();
        let collect = async {
            while let Some(item) = follower.next().await {
                items.push(item);
            }
        };
        tokio::time::timeout(TIMEOUT, collect)
            .await
            .expect("follow ends");
        assert_eq!(
            items,
            [
                FollowItem::Records(recs(1, 10)),
                FollowItem::Lag {
                    from: Seq(11),
                    to: Seq(500)
                }
            ]
        );
    }
    let store = open(dir.path(), StoreConfig::default());
    let query = LogQuery {
        since_seq: Some(Seq(11)),
        ..LogQuery::default()
    };
    let read = store.read(info.id, &query).expect("read");
    assert!(read.records.is_empty());
    assert_eq!(read.dropped, Some(range));
    assert_eq!(read.next_seq, Seq(501));
    let events = store.events_since(EventSeq(0), 10).expect("events");
    assert_eq!(events[1].kind, EventKind::LogDropped);
    assert_eq!(events[1].dropped, Some(range));
}
