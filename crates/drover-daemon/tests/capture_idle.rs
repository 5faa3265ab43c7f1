//! Capture under a steady stream (issue 11 item 8): a line's partial-flush idle time starts when
//! its own first bytes arrived. Alone in its test binary: it depends on pauses of a few
//! milliseconds staying well under the 50 ms idle time, which other tests running beside it
//! would stretch.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use drover_proto::AgentState;

/// Lines written in two halves, the pause between the halves shorter than the partial-flush
/// idle time (50 ms), are whole records, even when each write also finishes the previous line
/// (the idle timer starts with the unfinished bytes, not with an earlier, completed line).
#[tokio::test]
async fn lines_written_in_halves_are_never_split() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        // Each printf ends one line and begins the next in one write; `sleep 0.005` is the pause.
        let script = "printf 'l0-a'; i=0; while [ $i -lt 119 ]; do sleep 0.005; j=$((i+1)); \
                      printf -- \"-b\\nl$j-a\"; i=$j; done; sleep 0.005; printf -- '-b\\n'";
        let agent = client.spawn(sh(script)).await.unwrap();
        let done = client.wait(&agent.id.to_string(), None).await.unwrap();
        assert_eq!(done.state(), AgentState::Exited);
        let records = all_records(&client, &agent).await;
        let partial: Vec<String> = records
            .iter()
            .filter(|r| r.partial)
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        assert_eq!(partial, Vec::<String>::new(), "lines flushed as partial");
        let lines: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        let want: Vec<String> = (0..120).map(|i| format!("l{i}-a-b\n")).collect();
        assert_eq!(lines, want);
        daemon.shutdown().await;
    })
    .await
}
