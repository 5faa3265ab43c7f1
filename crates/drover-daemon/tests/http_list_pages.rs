//! `GET /v1/agents` pages like the `list` op: `limit`, `cursor`, `specs`, and `next_cursor`.

mod support;

use serde_json::{json, Value};
use support::{within, Daemon};

fn ids(page: &Value) -> Vec<String> {
    page["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn agents_are_listed_page_by_page_with_specs_on_request() {
    within(async {
        let daemon = Daemon::start().await;
        let mut spawned = Vec::new();
        for i in 0..5 {
            spawned.push(
                daemon
                    .spawn_spec(json!({"argv": ["true"], "labels": {"n": i.to_string()}}))
                    .await,
            );
        }
        let mut seen = Vec::new();
        let mut path = "/v1/agents?limit=2".to_owned();
        loop {
            let response = daemon.get(&path).await;
            assert_eq!(response.status, 200, "{}", response.text());
            let page = response.json();
            assert!(
                page["agents"][0].get("spec").is_none(),
                "no specs by default"
            );
            assert!(page["agents"][0]["labels"].is_object());
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/agents?limit=2&cursor={cursor}"),
                None => {
                    assert_eq!(page["next_cursor"], Value::Null);
                    break;
                }
            }
        }
        assert_eq!(seen, spawned);
        let with_specs = daemon.get("/v1/agents?specs=true").await.json();
        assert_eq!(ids(&with_specs), spawned);
        assert_eq!(with_specs["agents"][4]["spec"]["argv"], json!(["true"]));
        // A limit of 0 counts as 1: an empty page with no cursor would say there are none.
        let one = daemon.get("/v1/agents?limit=0").await.json();
        assert_eq!(ids(&one), spawned[..1]);
        assert!(one["next_cursor"].is_string(), "{one}");
        let bad = daemon.get("/v1/agents?cursor=nonsense").await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.error_code(), "bad_request");
        daemon.stop().await;
    })
    .await;
}
