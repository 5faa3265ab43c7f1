//! The user's own browser must not be turned against the daemon: requests whose `Host` is a
//! foreign name (DNS rebinding) or whose `Origin` is not the daemon's own (cross-site request
//! forgery) are refused with `401 unauthorized` before any credential is looked at or any route
//! runs; so is a URI longer than [`MAX_URI`] (`414 too_large`).
//!
//! With tokens required, a foreign page cannot act anyway (a browser sends no `Authorization`
//! header cross-origin without a CORS preflight, which the daemon never answers, and the login
//! cookie is SameSite=Strict). These checks remain as a second wall, and matter for the cookie:
//! SameSite treats every port of `localhost` as one site, so a dev server on `localhost:3000`
//! would otherwise ride on the cookie of `localhost:7712`. Only the daemon's own origin passes.
//!
//! The `Host` check applies on a loopback listener. A browser cannot reach the unix socket, and a
//! listener bound to another address is reached by names the daemon cannot know; every request
//! there needs a token or the cookie, which a rebound name never carries (cookies belong to the
//! name they were set for).

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_proto::ErrorCode;

use super::auth::unauthenticated;
use super::listen::Transport;
use super::{ApiError, AppState};

/// Longest request URI (path and query).
pub(crate) const MAX_URI: usize = 8 * 1024;

/// Refuse a URI over [`MAX_URI`] with `414 too_large`.
pub(crate) async fn short_uri(request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI {
        let mut response = ApiError::new(
            ErrorCode::TooLarge,
            format!("request URI over {} KiB", MAX_URI / 1024),
        )
        .into_response();
        *response.status_mut() = StatusCode::URI_TOO_LONG;
        return response;
    }
    next.run(request).await
}

/// Refuse a foreign `Host` (on loopback listeners) and any `Origin` but the daemon's own.
pub(crate) async fn same_origin(
    State(http): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let transport = request.extensions().get::<Transport>().copied();
    let headers = request.headers();
    let host = headers.get(HOST).map(|h| h.to_str().unwrap_or(""));
    // A browser cannot reach the unix socket, and a listener off loopback is reached by names
    // the daemon cannot know.
    let check_host = matches!(transport, Some(Transport::Tcp { loopback: true, .. }));
    if let (Some(host), true) = (host, check_host) {
        let public = &http.shared.config.http_public_hosts;
        if !is_loopback_authority(host) && !public.iter().any(|p| p.eq_ignore_ascii_case(host)) {
            return unauthenticated(&format!(
                "Host {host:?} is not a loopback address (a reverse proxy's public name goes in \
                 the config key http_public_hosts)"
            ));
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        // The page's own server is whatever answered at `Host`: on a plain listener that may be
        // a proxy in front of it that terminates TLS, so `https://` too; a TLS listener's own
        // pages are only ever `https://` (a plain-HTTP page at the same name is anyone's).
        let schemes: &[&str] = match transport {
            Some(Transport::Tcp { tls: true, .. }) => &["https://"],
            _ => &["http://", "https://"],
        };
        let own = host.is_some_and(|host| {
            schemes.iter().any(|scheme| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
            })
        });
        if !own {
            return unauthenticated(&format!(
                "requests from the web origin {origin:?} are not allowed (only the daemon's own)"
            ));
        }
    }
    next.run(request).await
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port (digits only). Anything after
/// the host but a port is refused (`[::1]evil.example`).
fn is_loopback_authority(authority: &str) -> bool {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, after)) => (host, after),
            None => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return false;
    }
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
            "[::1]evil.example",
            "[::1]:80x",
            "127.0.0.1:",
            "[::1",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
