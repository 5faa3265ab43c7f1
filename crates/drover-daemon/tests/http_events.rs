//! `GET /v1/events`: lifecycle events as Server-Sent Events, replayed from the store and then
//! live, resumable through `Last-Event-ID`, with no gap and no duplicate. Every stream opens with
//! a bare `id:` frame, so a client that drops before any event still resumes exactly.

mod support;

use support::{within, Daemon, SseClient, SseEvent};

/// Read events until one has id `last`.
async fn read_through(client: &mut SseClient, last: u64) -> Vec<SseEvent> {
    let mut events = Vec::new();
    loop {
        let event = client.next().await.expect("the events stream stays open");
        let seq = event.seq();
        events.push(event);
        if seq >= last {
            return events;
        }
    }
}

/// The stream's opening frame, which must be a bare `id:` (no event, no data); its id.
async fn opening(client: &mut SseClient) -> u64 {
    let first = client.next().await.expect("the opening frame");
    assert_eq!(
        first.event, "message",
        "a bare id frame names no event: {first:?}"
    );
    assert_eq!(first.data, "", "a bare id frame has no data: {first:?}");
    first.seq()
}

fn seqs(events: &[SseEvent]) -> Vec<u64> {
    events.iter().map(SseEvent::seq).collect()
}

#[tokio::test]
async fn replay_then_live_then_resume_by_last_event_id() {
    within(async {
        let daemon = Daemon::start().await;
        let first = daemon.spawn(&["sh", "-c", "exit 4"]).await;
        daemon.wait_exit(&first).await;
        let total = daemon.metric("drover_events_total").await;
        assert!(total >= 2, "spawned and exit at least");

        // Everything stored, from the start.
        let mut client = SseClient::connect(daemon.addr, "/v1/events?since=0", &[]).await;
        assert_eq!(client.header("content-type"), Some("text/event-stream"));
        assert_eq!(opening(&mut client).await, 0);
        let replayed = read_through(&mut client, total).await;
        assert_eq!(seqs(&replayed), (1..=total).collect::<Vec<_>>());
        assert_eq!(replayed[0].event, "spawned");
        let exit = replayed.last().expect("events");
        assert_eq!(exit.event, "exit");
        let data = exit.json();
        assert_eq!(data["agent"], first.as_str());
        assert_eq!(data["kind"], "exit");
        assert_eq!(data["state"], "exited");
        assert_eq!(data["exit_code"], 4);
        assert_eq!(data["event_seq"], total);

        // Then live, continuing the same numbering.
        let second = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&second).await;
        let now = daemon.metric("drover_events_total").await;
        let live = read_through(&mut client, now).await;
        assert_eq!(seqs(&live), (total + 1..=now).collect::<Vec<_>>());
        assert!(live.iter().all(|e| e.json()["agent"] == second.as_str()));
        assert_eq!(live.last().expect("live events").event, "exit");
        drop(client);

        // Resume after event 1: exactly 2..=now.
        let mut resumed =
            SseClient::connect(daemon.addr, "/v1/events", &[("Last-Event-ID", "1")]).await;
        assert_eq!(opening(&mut resumed).await, 1);
        assert_eq!(
            seqs(&read_through(&mut resumed, now).await),
            (2..=now).collect::<Vec<_>>()
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_since_only_new_events_arrive() {
    within(async {
        let daemon = Daemon::start().await;
        let old = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&old).await;
        let before = daemon.metric("drover_events_total").await;
        let mut client = SseClient::connect(daemon.addr, "/v1/events", &[]).await;
        assert_eq!(opening(&mut client).await, before);
        support::wait_for("the event stream to be counted", || async {
            daemon.metric("drover_event_followers").await == 1
        })
        .await;
        let new = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&new).await;
        let now = daemon.metric("drover_events_total").await;
        let events = read_through(&mut client, now).await;
        assert_eq!(seqs(&events), (before + 1..=now).collect::<Vec<_>>());
        assert_eq!(events[0].event, "spawned");
        assert!(events.iter().all(|e| e.json()["agent"] == new.as_str()));
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn agent_filter_and_bad_requests() {
    within(async {
        let daemon = Daemon::start().await;
        let a = daemon.spawn(&["true"]).await;
        let b = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&a).await;
        daemon.wait_exit(&b).await;
        let now = daemon.metric("drover_events_total").await;
        let mut client =
            SseClient::connect(daemon.addr, &format!("/v1/events?since=0&agent={b}"), &[]).await;
        assert_eq!(opening(&mut client).await, 0);
        let mut events = Vec::new();
        while events.last().is_none_or(|e: &SseEvent| e.event != "exit") {
            events.push(client.next().await.expect("open"));
        }
        assert!(events.iter().all(|e| e.json()["agent"] == b.as_str()));
        assert!(events.iter().all(|e| e.seq() <= now));
        assert_eq!(events[0].event, "spawned");

        let unknown = support::request(
            daemon.addr,
            "GET",
            "/v1/events?agent=nope",
            &[("Accept", "text/event-stream")],
            b"",
        )
        .await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.error_code(), "not_found");
        let bad = support::request(daemon.addr, "GET", "/v1/events?since=x", &[], b"").await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.error_code(), "bad_request");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_since_past_the_last_event_is_refused_and_the_last_one_itself_goes_on_live() {
    within(async {
        let daemon = Daemon::start().await;
        let a = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&a).await;
        let last = daemon.metric("drover_events_total").await;
        // Past the last event, up to numbers SQLite cannot hold: 400 at once, never a stream
        // waiting for numbering to get there (nor re-reading the store without end).
        for (path, headers) in [
            (format!("/v1/events?since={}", last + 1), vec![]),
            (format!("/v1/events?since={}", u64::MAX), vec![]),
            (
                "/v1/events".to_owned(),
                vec![("Last-Event-ID", "9223372036854775808")],
            ),
        ] {
            let refused = support::request(daemon.addr, "GET", &path, &headers, b"").await;
            assert_eq!(refused.status, 400, "{path} {headers:?}");
            assert_eq!(refused.error_code(), "bad_request");
        }
        // The last event's own number: nothing replayed, the next event live.
        let mut client =
            SseClient::connect(daemon.addr, &format!("/v1/events?since={last}"), &[]).await;
        assert_eq!(opening(&mut client).await, last);
        let b = daemon.spawn(&["true"]).await;
        let next = client.next().await.expect("the stream stays open");
        assert_eq!(next.seq(), last + 1);
        assert_eq!(next.json()["agent"], b.as_str());
        daemon.stop().await;
    })
    .await;
}

/// A stream opened without `since` says at once where it stands, before any event: an
/// `EventSource` that drops then reconnects with that `Last-Event-ID` and gets exactly the events
/// of the outage, where a stream starting at "now" again would lose them all.
#[tokio::test]
async fn a_stream_opens_with_the_newest_id_so_a_reconnect_before_any_event_misses_nothing() {
    within(async {
        let daemon = Daemon::start().await;
        let old = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&old).await;
        let newest = daemon.metric("drover_events_total").await;
        assert!(newest >= 2, "spawned and exit at least");

        // Nothing happens while it is open: the id frame alone arrives.
        let mut client = SseClient::connect(daemon.addr, "/v1/events", &[]).await;
        let resume = opening(&mut client).await;
        assert_eq!(resume, newest);
        drop(client);

        // The outage: events the dropped client has not seen.
        let missed = daemon.spawn(&["sh", "-c", "exit 3"]).await;
        daemon.wait_exit(&missed).await;
        let now = daemon.metric("drover_events_total").await;
        assert!(now > newest);

        let id = resume.to_string();
        let mut resumed =
            SseClient::connect(daemon.addr, "/v1/events", &[("Last-Event-ID", &id)]).await;
        assert_eq!(opening(&mut resumed).await, newest);
        let events = read_through(&mut resumed, now).await;
        assert_eq!(seqs(&events), (newest + 1..=now).collect::<Vec<_>>());
        assert!(events.iter().all(|e| e.json()["agent"] == missed.as_str()));
        assert_eq!(events[0].event, "spawned");
        let exit = events.last().expect("events");
        assert_eq!(exit.event, "exit");
        assert_eq!(exit.json()["exit_code"], 3);

        // Then live, with no duplicate of the replay.
        let after = daemon.spawn(&["true"]).await;
        let next = resumed.next().await.expect("the stream stays open");
        assert_eq!(next.seq(), now + 1);
        assert_eq!(next.json()["agent"], after.as_str());
        daemon.stop().await;
    })
    .await;
}
