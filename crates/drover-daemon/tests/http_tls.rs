//! Off loopback, HTTP is TLS: a daemon bound to `0.0.0.0` makes a self-signed certificate,
//! prints its fingerprint on the ready line, and serves only TLS. Checked with the real `curl`
//! (trusting exactly that certificate) and `openssl` (computing the fingerprint independently).

mod support;

use std::path::Path;
use std::process::Output;

use support::{within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn run(program: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup-test-env installs it): {e}"))
}

#[tokio::test]
async fn a_non_loopback_bind_serves_tls_with_the_printed_fingerprint() {
    within(async {
        let daemon = Daemon::start_with(|config| config.http = "0.0.0.0:0".into()).await;
        let port = daemon.addr.port();
        assert_eq!(daemon.http_url, format!("https://127.0.0.1:{port}"));
        let printed = daemon
            .tls
            .clone()
            .expect("the ready line names the fingerprint");
        assert_eq!(
            drover_daemon::tls::fingerprint(&daemon.state_dir).expect("fingerprint"),
            printed
        );
        let cert = daemon.state_dir.join("tls/cert.pem");
        let cert = cert.to_str().expect("utf-8 path");
        let key = daemon.state_dir.join("tls/key.pem");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&key).expect("key").permissions()
            ) & 0o777,
            0o600
        );

        // openssl agrees on the fingerprint.
        let openssl = run(
            "openssl",
            &["x509", "-noout", "-fingerprint", "-sha256", "-in", cert],
        )
        .await;
        let text = String::from_utf8_lossy(&openssl.stdout);
        let theirs = text
            .trim()
            .split_once('=')
            .map(|(_, hex)| hex.to_owned())
            .expect("openssl prints NAME=FINGERPRINT");
        assert_eq!(printed, format!("sha256:{theirs}"));

        // curl trusting only this certificate, by IP and by name.
        let auth = format!("Authorization: Bearer {}", daemon.token);
        let url = format!("https://127.0.0.1:{port}/v1/health");
        let ok = run("curl", &["-sS", "--cacert", cert, "-H", &auth, &url]).await;
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let health: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON");
        assert_eq!(health["protocol"], 1);
        let resolve = format!("localhost:{port}:127.0.0.1");
        let by_name = format!("https://localhost:{port}/v1/health");
        let named = run(
            "curl",
            &[
                "-sS",
                "--cacert",
                cert,
                "--resolve",
                &resolve,
                "-H",
                &auth,
                &by_name,
            ],
        )
        .await;
        assert!(
            named.status.success(),
            "{}",
            String::from_utf8_lossy(&named.stderr)
        );

        // Without trusting it, curl refuses the certificate (exit 60); without a token, 401.
        let untrusted = run("curl", &["-sS", "-H", &auth, &url]).await;
        assert_eq!(untrusted.status.code(), Some(60));
        let anonymous = run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                cert,
                &url,
            ],
        )
        .await;
        assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");

        // The login cookie is Secure under TLS.
        let token_body = format!("{{\"token\": \"{}\"}}", daemon.token);
        let login_url = format!("https://127.0.0.1:{port}/login");
        let login = run(
            "curl",
            &[
                "-sS",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "--cacert",
                cert,
                "-d",
                &token_body,
                &login_url,
            ],
        )
        .await;
        let head = String::from_utf8_lossy(&login.stdout);
        assert!(
            head.lines()
                .any(|l| l.to_ascii_lowercase().starts_with("set-cookie:")
                    && l.trim_end().ends_with("; Secure")),
            "{head}"
        );

        // Plain HTTP to the TLS port gets no HTTP answer.
        let mut plain = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let request = format!("GET /v1/health HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n");
        plain.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let _ = plain.read_to_end(&mut raw).await;
        assert!(
            !raw.starts_with(b"HTTP/"),
            "plain HTTP was answered: {raw:?}"
        );
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_configured_certificate_is_used_even_on_loopback() {
    within(async {
        let keys = tempfile::tempdir().expect("tempdir");
        let cert = keys.path().join("cert.pem");
        let key = keys.path().join("key.pem");
        make_cert(&cert, &key).await;
        let (cert_for_config, key_for_config) = (cert.clone(), key.clone());
        let daemon = Daemon::start_with(move |config| {
            config.tls_cert = Some(cert_for_config);
            config.tls_key = Some(key_for_config);
        })
        .await;
        let port = daemon.addr.port();
        assert_eq!(daemon.http_url, format!("https://127.0.0.1:{port}"));
        assert_eq!(
            daemon.tls.as_deref(),
            Some(
                drover_daemon::tls::fingerprint_file(&cert)
                    .expect("fingerprint")
                    .as_str()
            )
        );
        assert!(
            !daemon.state_dir.join("tls").exists(),
            "no self-signed certificate is made when one is configured"
        );
        let auth = format!("Authorization: Bearer {}", daemon.token);
        let url = format!("https://127.0.0.1:{port}/v1/health");
        let cert = cert.to_str().expect("utf-8");
        let ok = run("curl", &["-sS", "--cacert", cert, "-H", &auth, &url]).await;
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        daemon.stop().await;
    })
    .await
}

/// A self-signed certificate for 127.0.0.1, made by openssl.
async fn make_cert(cert: &Path, key: &Path) {
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=drover-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().expect("utf-8"),
            "-out",
            cert.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

#[tokio::test]
async fn a_tls_listener_takes_only_https_origins_as_its_own() {
    within(async {
        let daemon = Daemon::start_with(|config| config.http = "0.0.0.0:0".into()).await;
        let port = daemon.addr.port();
        let cert = daemon.state_dir.join("tls/cert.pem");
        let cert = cert.to_str().expect("utf-8 path");
        let auth = format!("Authorization: Bearer {}", daemon.token);
        let url = format!("https://127.0.0.1:{port}/v1/health");
        let status = |origin: String| {
            let (cert, auth, url) = (cert.to_owned(), auth.clone(), url.clone());
            async move {
                let header = format!("Origin: {origin}");
                let out = run(
                    "curl",
                    &[
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--cacert",
                        &cert,
                        "-H",
                        &auth,
                        "-H",
                        &header,
                        &url,
                    ],
                )
                .await;
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        assert_eq!(status(format!("https://127.0.0.1:{port}")).await, "200");
        // A plain-HTTP page of the same name is anyone's who can answer on port 80 there.
        assert_eq!(status(format!("http://127.0.0.1:{port}")).await, "401");
        daemon.stop().await;
    })
    .await
}
