//! Integrity under load and hostile input (issue 11): requests with too many values are refused
//! before they are decoded, `list` replies are paged under the frame limit, and `.`/`..` are not
//! names. Through the real daemon and the real client. (Line splitting is in `capture_idle.rs`,
//! descriptors in `fd_budget.rs`: each alone in its binary.)

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use drover_proto::op::ListArgs;
use drover_proto::{AgentSpec, ErrorCode};

/// `.` and `..` are not names (they mean a directory and its parent wherever a name becomes a
/// path or a URL segment); names with other dots are fine.
#[tokio::test]
async fn dot_names_are_refused() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        for name in [".", ".."] {
            let mut spec = sh("exit 0");
            spec.name = Some(name.into());
            let error = client.spawn(spec).await.expect_err("refused");
            assert_eq!(error.code(), Some(ErrorCode::BadRequest), "{name}");
            assert!(error.to_string().contains("reserved"), "{name}: {error}");
        }
        for name in ["...", ".hidden", "v1.2"] {
            let mut spec = sh("exit 0");
            spec.name = Some(name.into());
            let agent = client.spawn(spec).await.unwrap();
            assert_eq!(agent.name.as_deref(), Some(name));
        }
        assert_eq!(client.list(ListArgs::default()).await.unwrap().len(), 3);
        daemon.shutdown().await;
    })
    .await
}

/// A request holding more values than `MAX_ELEMENTS` is refused as `bad_request` from its
/// headers, before it is decoded: here 40,000 labels, within the spec's byte budget.
#[tokio::test]
async fn a_request_with_too_many_values_is_a_bad_request() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("exit 0");
        spec.labels = (0..40_000)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let error = client.spawn(spec).await.expect_err("refused");
        assert_eq!(error.code(), Some(ErrorCode::BadRequest));
        assert!(error.to_string().contains("values"), "{error}");
        // Nothing was spawned, and the daemon serves on.
        assert!(client.list(ListArgs::default()).await.unwrap().is_empty());
        daemon.shutdown().await;
    })
    .await
}

/// Agents with large specs are listed in pages that each fit under the frame limit; following
/// `next_cursor` yields every agent exactly once, in creation order; specs come only when asked.
#[tokio::test]
async fn list_pages_stay_under_the_frame_limit_and_cover_every_agent_once() {
    within(async {
        const MAX_FRAME: usize = 256 * 1024;
        let daemon = TestDaemon::start_with(|config| config.max_frame = MAX_FRAME).await;
        let client = daemon.client().await;
        let mut ids = Vec::new();
        for i in 0..24 {
            let mut spec = sh("exit 0");
            spec.context = Some(format!("{i:02}").repeat(30_000)); // 60 KB each
            ids.push(client.spawn(spec).await.unwrap().id);
        }
        // With specs: 24 × 60 KB cannot fit one 256 KiB frame, so several pages.
        let mut args = ListArgs {
            specs: true,
            ..ListArgs::default()
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = client.list_page(args.clone()).await.unwrap();
            pages += 1;
            let bytes = drover_proto::encode_reply(
                &rmpv::Value::from(u64::MAX),
                drover_proto::ReplyBody::Ok(&page),
            )
            .unwrap();
            assert!(
                bytes.len() <= MAX_FRAME,
                "page {pages}: {} bytes",
                bytes.len()
            );
            assert!(!page.agents.is_empty(), "page {pages} is empty");
            for agent in &page.agents {
                assert_eq!(agent.spec.context.as_ref().map(String::len), Some(60_000));
            }
            seen.extend(page.agents.iter().map(|a| a.id));
            match page.next_cursor {
                Some(cursor) => args.cursor = Some(cursor),
                None => break,
            }
        }
        assert!(pages >= 6, "{pages} pages");
        assert_eq!(seen, ids, "every agent once, oldest first");
        // list_all pages the same way.
        let all = client
            .list_all(ListArgs {
                specs: true,
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
        // Without specs (the default) they all fit one page, each without its spec.
        let page = client.list_page(ListArgs::default()).await.unwrap();
        assert_eq!(page.next_cursor, None);
        assert_eq!(page.agents.iter().map(|a| a.id).collect::<Vec<_>>(), ids);
        assert!(page.agents.iter().all(|a| a.spec == AgentSpec::default()));
        // `get` still carries the spec.
        let one = client.get(&ids[3].to_string()).await.unwrap();
        assert_eq!(one.spec.context.as_deref().map(str::len), Some(60_000));
        // `limit` bounds a page; list_all's limit bounds the total.
        let page = client
            .list_page(ListArgs {
                limit: Some(5),
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page.agents.iter().map(|a| a.id).collect::<Vec<_>>(),
            ids[..5]
        );
        let rest = client
            .list_all(ListArgs {
                cursor: page.next_cursor,
                limit: Some(7),
                ..ListArgs::default()
            })
            .await
            .unwrap();
        assert_eq!(rest.iter().map(|a| a.id).collect::<Vec<_>>(), ids[5..12]);
        // A cursor that is not one is a bad request.
        let error = client
            .list_page(ListArgs {
                cursor: Some("page-2".into()),
                ..ListArgs::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Some(ErrorCode::BadRequest));
        daemon.shutdown().await;
    })
    .await
}
