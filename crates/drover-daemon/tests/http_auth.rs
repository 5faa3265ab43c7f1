//! Every HTTP request is authenticated: a bearer token (or the login cookie) on TCP, file
//! permission on the unix socket. Roles: `read` and `control`.

mod support;

use drover_proto::Role;
use serde_json::json;
use support::{request, request_unix, request_without_token, within, Daemon};

const SPAWN: &[u8] = br#"{"spec": {"argv": ["sh", "-c", "echo pwned"]}}"#;

/// The number of agents the daemon knows (asked with the harness's control token).
async fn agent_count(daemon: &Daemon) -> usize {
    daemon.get("/v1/agents").await.json()["agents"]
        .as_array()
        .expect("agents")
        .len()
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_401_before_routing() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon.spawn(&["sleep", "30"]).await;
        // The same answer whether the route or the agent exists or not.
        for (method, path, body) in [
            ("GET", "/v1/health".to_owned(), &b""[..]),
            ("GET", format!("/v1/agents/{id}"), b""),
            ("GET", "/v1/agents/no-such-agent".to_owned(), b""),
            ("GET", "/no/such/route".to_owned(), b""),
            ("POST", "/v1/agents".to_owned(), SPAWN),
            ("GET", "/metrics".to_owned(), b""),
            ("GET", format!("/v1/agents/{id}/logs?follow=true"), b""),
            ("GET", "/v1/events".to_owned(), b""),
        ] {
            let none = request_without_token(daemon.addr, method, &path, &[], body).await;
            assert_eq!(none.status, 401, "{method} {path}: {}", none.text());
            assert_eq!(none.error_code(), "unauthorized");
            assert_eq!(none.header("www-authenticate"), Some("Bearer"));
            // No connection slot is kept for a peer without a credential.
            assert_eq!(none.header("connection"), Some("close"));
            let wrong = request(
                daemon.addr,
                method,
                &path,
                &[("Authorization", "Bearer drv_not-a-real-token")],
                body,
            )
            .await;
            assert_eq!(wrong.status, 401, "{method} {path}");
            assert_eq!(wrong.error_code(), "unauthorized");
            assert!(
                !wrong.text().contains("drv_not-a-real-token"),
                "a presented secret is never echoed"
            );
        }
        assert_eq!(agent_count(&daemon).await, 1, "nothing was spawned");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_read_token_reads_and_follows_but_cannot_change_anything() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&["sh", "-c", "echo line 1; echo line 2"])
            .await;
        daemon.wait_exit(&id).await;
        let read = daemon.token(Role::Read, "reader");
        let auth = format!("Bearer {read}");
        let as_reader = [("Authorization", auth.as_str())];

        let logs = request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?format=json"),
            &as_reader,
            b"",
        )
        .await;
        assert_eq!(logs.status, 200, "{}", logs.text());
        let texts: Vec<_> = logs.json()["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["text"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(texts, ["line 1\n", "line 2\n"]);

        let sse = [
            ("Authorization", auth.as_str()),
            ("Accept", "text/event-stream"),
        ];
        let mut follow = support::SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &sse,
        )
        .await;
        assert_eq!(follow.status, 200);
        assert_eq!(support::log_seqs(&follow.collect().await), [1, 2]);
        let metrics = request(daemon.addr, "GET", "/metrics", &as_reader, b"").await;
        assert_eq!(metrics.status, 200);

        let spawn = request(daemon.addr, "POST", "/v1/agents", &as_reader, SPAWN).await;
        assert_eq!(spawn.status, 403, "{}", spawn.text());
        assert_eq!(spawn.error_code(), "unauthorized");
        assert!(spawn.header("www-authenticate").is_none());
        // Refused before routing: an unknown agent gets the same answer as a known one.
        for path in [
            format!("/v1/agents/{id}/kill"),
            "/v1/agents/no-such-agent/kill".to_owned(),
        ] {
            let kill = request(daemon.addr, "POST", &path, &as_reader, b"").await;
            assert_eq!(kill.status, 403, "{path}");
        }
        let remove = request(
            daemon.addr,
            "DELETE",
            &format!("/v1/agents/{id}"),
            &as_reader,
            b"",
        )
        .await;
        assert_eq!(remove.status, 403);
        assert_eq!(agent_count(&daemon).await, 1, "nothing spawned or removed");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_read_token_sees_environment_names_but_not_their_values() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn_spec(json!({"argv": ["sleep", "100"], "env": {"API_KEY": "sk-secret-123"}}))
            .await;
        let read = daemon.token(Role::Read, "reader");
        let auth = format!("Bearer {read}");
        let as_reader = [("Authorization", auth.as_str())];
        let one = request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}"),
            &as_reader,
            b"",
        )
        .await;
        assert_eq!(one.status, 200, "{}", one.text());
        assert_eq!(one.json()["agent"]["spec"]["env"]["API_KEY"], "<redacted>");
        // A complete JSON reply keeps its length (only streams are wrapped for the recheck).
        assert!(one.header("content-length").is_some(), "{:?}", one.headers);
        let all = request(daemon.addr, "GET", "/v1/agents?specs=true", &as_reader, b"").await;
        assert_eq!(all.status, 200, "{}", all.text());
        assert_eq!(
            all.json()["agents"][0]["spec"]["env"]["API_KEY"],
            "<redacted>"
        );
        assert!(!all.text().contains("sk-secret-123"));
        // The control token sees the value.
        let full = daemon.get(&format!("/v1/agents/{id}")).await;
        assert_eq!(
            full.json()["agent"]["spec"]["env"]["API_KEY"],
            "sk-secret-123"
        );
        // `wait` hands back the agent too: redacted for the reader.
        let kill = daemon
            .post_json(&format!("/v1/agents/{id}/kill"), &json!({}))
            .await;
        assert_eq!(kill.status, 200, "{}", kill.text());
        let waited = request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/wait"),
            &as_reader,
            b"",
        )
        .await;
        assert_eq!(waited.status, 200, "{}", waited.text());
        assert_eq!(
            waited.json()["agent"]["spec"]["env"]["API_KEY"],
            "<redacted>"
        );
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_revoked_token_stops_working_without_a_restart() {
    within(async {
        let daemon = Daemon::start().await;
        let token = daemon.token(Role::Control, "laptop");
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str())];
        let health = || request(daemon.addr, "GET", "/v1/health", &headers, b"");
        assert_eq!(health().await.status, 200);
        let listed = drover_daemon::token::list(&daemon.state_dir).expect("list");
        let laptop: Vec<_> = listed.iter().filter(|t| t.comment == "laptop").collect();
        assert_eq!(laptop.len(), 1);
        assert_eq!(laptop[0].role, Role::Control);
        let revoked =
            drover_daemon::token::revoke(&daemon.state_dir, &laptop[0].id).expect("revoke");
        assert_eq!(revoked, 1);
        let refused = health().await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.error_code(), "unauthorized");
        // Other tokens are unaffected.
        assert_eq!(daemon.get("/v1/health").await.status, 200);
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_token_file_that_cannot_be_read_admits_nobody_until_it_can() {
    within(async {
        let daemon = Daemon::start().await;
        assert_eq!(daemon.get("/v1/health").await.status, 200);
        // Not a file any more (the tests run as root, which reads any mode): reading fails.
        let path = drover_daemon::token::path(&daemon.state_dir);
        let saved = std::fs::read(&path).expect("tokens");
        std::fs::remove_file(&path).expect("remove");
        std::fs::create_dir(&path).expect("a directory in its place");
        let refused = daemon.get("/v1/health").await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.error_code(), "unauthorized");
        // Readable again: the same token is served, with no restart.
        std::fs::remove_dir(&path).expect("remove the directory");
        std::fs::write(&path, saved).expect("restore");
        assert_eq!(daemon.get("/v1/health").await.status, 200);
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_revoked_token_ends_the_streams_and_waits_it_had_open() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&["sh", "-c", "while :; do echo tick; sleep 0.1; done"])
            .await;
        let read = daemon.token(Role::Read, "watcher");
        let control = daemon.token(Role::Control, "waiter");
        let watcher = format!("Bearer {read}");
        let mut follow = support::SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[("Authorization", watcher.as_str())],
        )
        .await;
        assert_eq!(follow.status, 200);
        for _ in 0..3 {
            assert!(follow.next().await.is_some(), "the follow streams");
        }
        let waiter = format!("Bearer {control}");
        let addr = daemon.addr;
        let path = format!("/v1/agents/{id}/wait");
        let wait = tokio::spawn(async move {
            request(
                addr,
                "GET",
                &path,
                &[("Authorization", waiter.as_str())],
                b"",
            )
            .await
        });
        for token in drover_daemon::token::list(&daemon.state_dir).expect("list") {
            if token.comment == "watcher" || token.comment == "waiter" {
                drover_daemon::token::revoke(&daemon.state_dir, &token.id).expect("revoke");
            }
        }
        // The stream ends (the agent still prints), saying why, and the wait is refused.
        let rest = follow.collect().await;
        let last = rest.last().expect("the stream's last event");
        assert_eq!(last.event, "unauthorized");
        assert_eq!(last.json()["error"]["code"], "unauthorized");
        let waited = wait.await.expect("wait task");
        assert_eq!(waited.status, 401, "{}", waited.text());
        assert_eq!(waited.error_code(), "unauthorized");
        let again = request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs"),
            &[("Authorization", watcher.as_str())],
            b"",
        )
        .await;
        assert_eq!(again.status, 401);
        let agent = daemon.get(&format!("/v1/agents/{id}")).await.json();
        assert_eq!(agent["agent"]["state"], "running");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_unix_socket_needs_no_token_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    within(async {
        let daemon = Daemon::start().await;
        let socket = daemon.unix.clone().expect("the HTTP unix socket is bound");
        assert_eq!(socket, daemon.state_dir.join("http.sock"));
        let mode = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let spawned = request_unix(
            &socket,
            "POST",
            "/v1/agents",
            &[],
            &serde_json::to_vec(&json!({"spec": {"argv": ["true"]}})).expect("json"),
        )
        .await;
        assert_eq!(spawned.status, 201, "{}", spawned.text());
        let health = request_unix(&socket, "GET", "/v1/health", &[], b"").await;
        assert_eq!(health.status, 200);
        assert_eq!(agent_count(&daemon).await, 1);
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_login_cookie_authenticates_like_the_token_and_is_revoked_with_it() {
    within(async {
        let daemon = Daemon::start().await;
        let token = daemon.token(Role::Read, "browser");
        let body = serde_json::to_vec(&json!({ "token": token })).expect("json");
        let login = request_without_token(daemon.addr, "POST", "/login", &[], &body).await;
        assert_eq!(login.status, 200, "{}", login.text());
        assert_eq!(login.json(), json!({"role": "read"}));
        let cookie = login.header("set-cookie").expect("a cookie").to_owned();
        // A session id, never the token: other services on this host see the cookie too.
        let jar = session_of(&cookie);
        assert!(!cookie.contains(&token), "{cookie}");
        assert_eq!(
            cookie,
            format!("{jar}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
            "no Secure flag on plain loopback HTTP"
        );
        let health = request(daemon.addr, "GET", "/v1/health", &[("Cookie", &jar)], b"").await;
        assert_eq!(health.status, 200);

        // A wrong token gets no cookie; the form works too.
        let wrong = request_without_token(
            daemon.addr,
            "POST",
            "/login",
            &[],
            br#"{"token": "drv_wrong"}"#,
        )
        .await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.header("set-cookie").is_none());
        let form = request_without_token(
            daemon.addr,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={token}").as_bytes(),
        )
        .await;
        assert_eq!(form.status, 200);
        assert!(form.header("set-cookie").is_some());
        // The one body read before any credential is small: a 5 KiB login is refused unread.
        let padded = format!("token={token}&pad={}", "x".repeat(5 * 1024));
        let big = request_without_token(
            daemon.addr,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            padded.as_bytes(),
        )
        .await;
        assert_eq!(big.status, 413, "{}", big.text());
        assert_eq!(big.error_code(), "too_large");
        assert!(big.header("set-cookie").is_none());
        let page = request_without_token(daemon.addr, "GET", "/login", &[], b"").await;
        assert_eq!(page.status, 200);
        assert!(page
            .text()
            .contains(r#"<form method="post" action="/login">"#));
        // No other page may frame the token form.
        assert!(page
            .header("content-security-policy")
            .is_some_and(|policy| policy.contains("frame-ancestors 'none'")));
        // The cookie older builds set (it held the token) is cleared at login.
        assert!(login
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("set-cookie")
                && v.starts_with("drover_token=; Max-Age=0")));

        // A state-changing request on a cookie must show its origin, and only the daemon's own
        // passes; the role still applies.
        let own = format!("http://{}", daemon.addr);
        let no_origin = request(
            daemon.addr,
            "POST",
            "/v1/agents",
            &[("Cookie", &jar)],
            SPAWN,
        )
        .await;
        assert_eq!(no_origin.status, 403);
        let as_reader = request(
            daemon.addr,
            "POST",
            "/v1/agents",
            &[("Cookie", &jar), ("Origin", &own)],
            SPAWN,
        )
        .await;
        assert_eq!(as_reader.status, 403, "a read cookie cannot spawn");
        let other_port = request(
            daemon.addr,
            "GET",
            "/v1/health",
            &[("Cookie", &jar), ("Origin", "http://localhost:3000")],
            b"",
        )
        .await;
        assert_eq!(other_port.status, 401, "another loopback origin is foreign");

        // Logging out ends the session here, not only in the browser: a copy of the cookie
        // is refused from then on.
        let logout =
            request_without_token(daemon.addr, "POST", "/logout", &[("Cookie", &jar)], b"").await;
        assert_eq!(logout.status, 204);
        assert!(logout
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("drover_session=; Max-Age=0")));
        let after_logout =
            request(daemon.addr, "GET", "/v1/health", &[("Cookie", &jar)], b"").await;
        assert_eq!(
            after_logout.status, 401,
            "the session ended with the logout"
        );

        // A new session ends when its token is revoked.
        let again = request_without_token(daemon.addr, "POST", "/login", &[], &body).await;
        let jar = session_of(again.header("set-cookie").expect("a cookie"));
        let health = request(daemon.addr, "GET", "/v1/health", &[("Cookie", &jar)], b"").await;
        assert_eq!(health.status, 200);
        drover_daemon::token::revoke(&daemon.state_dir, "browser").expect("revoke");
        let after = request(daemon.addr, "GET", "/v1/health", &[("Cookie", &jar)], b"").await;
        assert_eq!(
            after.status, 401,
            "revoking the token ends the cookie's session"
        );
        assert_eq!(agent_count(&daemon).await, 0);
        daemon.stop().await;
    })
    .await
}

/// The `name=value` of a `Set-Cookie` header: what a browser sends back.
fn session_of(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().expect("name=value").to_owned();
    assert!(pair.starts_with("drover_session=drs_"), "{set_cookie}");
    pair
}

/// `curl` run as the unprivileged user `nobody`: its exit status and what `-w` printed.
async fn curl_as_nobody(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "curl", "-sS", "-o", "/dev/null"])
        .args(["-w", "%{http_code}"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("runuser and curl run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn another_local_user_can_neither_open_the_unix_socket_nor_spawn_over_tcp() {
    assert!(
        nix::unistd::getuid().is_root(),
        "this test switches to the user nobody and must run as root (CI does)"
    );
    within(async {
        let daemon = Daemon::start().await;
        let socket = daemon.unix.clone().expect("unix socket");
        let socket = socket.to_str().expect("utf-8 path");
        let (code, status) =
            curl_as_nobody(&["--unix-socket", socket, "http://localhost/v1/health"]).await;
        // curl's "couldn't connect": the state directory (0700) keeps nobody out.
        assert_eq!((code, status.as_str()), (Some(7), "000"));

        let url = format!("http://{}/v1/agents", daemon.addr);
        let spawn = std::str::from_utf8(SPAWN).expect("utf-8");
        let (code, status) = curl_as_nobody(&["-X", "POST", &url, "-d", spawn]).await;
        assert_eq!((code, status.as_str()), (Some(0), "401"));
        let (_, status) = curl_as_nobody(&[&url]).await;
        assert_eq!(status, "401", "nobody cannot even list");
        assert_eq!(agent_count(&daemon).await, 0, "nothing was spawned");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn the_unix_socket_takes_any_host_name_but_still_checks_the_origin() {
    within(async {
        let daemon = Daemon::start().await;
        let socket = daemon.unix.clone().expect("unix socket");
        let named = request_unix(&socket, "GET", "/v1/health", &[("Host", "drover")], b"").await;
        assert_eq!(named.status, 200, "{}", named.text());
        let foreign = request_unix(
            &socket,
            "POST",
            "/v1/agents",
            &[("Origin", "http://evil.example")],
            SPAWN,
        )
        .await;
        assert_eq!(foreign.status, 401);
        assert_eq!(agent_count(&daemon).await, 0);
        daemon.stop().await;
    })
    .await
}
