//! Who may talk to the HTTP API: requests addressed to a loopback name, from no web origin or a
//! loopback one.
//!
//! The daemon listens on loopback without authentication, so the threats are the user's own
//! browser being used against it: a page on another site posting to `127.0.0.1:7712` (cross-site
//! request forgery: browsers send `Origin` on such requests), or a hostile DNS name rebound to
//! 127.0.0.1 (the request then carries that name in `Host`). Both are refused with
//! `unauthorized` before any route runs. curl, scripts and same-origin pages are unaffected.

use axum::extract::Request;
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_proto::ErrorCode;

use super::ApiError;

/// Refuse requests whose `Host` is not a loopback name or whose `Origin` is a foreign site.
pub(crate) async fn loopback_only(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if let Some(host) = headers.get(HOST) {
        let host = host.to_str().unwrap_or("");
        if !is_loopback_authority(host) {
            return refuse(format!("Host {host:?} is not a loopback address"));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(is_loopback_authority) {
            return refuse(format!(
                "requests from the web origin {origin:?} are not allowed"
            ));
        }
    }
    next.run(request).await
}

fn refuse(message: String) -> Response {
    ApiError::new(ErrorCode::Unauthorized, message).into_response()
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_authority;

    #[test]
    fn only_loopback_authorities_pass() {
        for ok in [
            "127.0.0.1:7712",
            "127.0.0.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:7712",
            "[::1]",
            "127.1.2.3:9",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example:7712",
            "evil.example",
            "192.168.1.2:7712",
            "0.0.0.0:7712",
            "[::2]:1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
