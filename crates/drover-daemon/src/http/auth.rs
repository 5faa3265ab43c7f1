//! Who is calling: every request is authenticated before routing, so a refusal never says whether
//! a route or an agent exists.
//!
//! - On the unix socket in the state directory, file permission is the credential: full control.
//! - On TCP, the request carries `Authorization: Bearer <token>` or the login cookie holding the
//!   same token ([`super::login`]); its role comes from the token file ([`crate::token`]). None,
//!   or an unknown or revoked token: `401` with `WWW-Authenticate: Bearer`.
//! - A method other than GET or HEAD changes something and needs `control`; a `read` token gets
//!   `403`. [`crate::handler::dispatch`] checks each op's role again (`call` turns its refusal
//!   into `403` too). Both answers carry the code `unauthorized`.
//!
//! - A credential checked once is not trusted for ever: a GET on TCP (a long `wait`, a follow
//!   that streams for hours) is checked again every [`RECHECK`] while it runs, and ends when its
//!   token is revoked or its role changed, or its session ended: a `wait` still waiting gets
//!   `401`, and a stream that has begun ends (a browser's EventSource then reconnects and gets
//!   `401`). A request that changes something runs to its end.
//!
//! The caller is handed to the route through a task-local ([`CALLER`]) rather than an extractor
//! on every route: the routes run inside this middleware's future, and a route that somehow ran
//! outside it finds no caller and is refused (fail closed).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_proto::{ErrorCode, Role};
use futures::StreamExt;

use super::listen::Transport;
use super::{ApiError, AppState};
use crate::caller::{Caller, Via};

/// How often a running request's credential is checked again.
pub(crate) const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The login cookie's name; it holds a session id ([`super::session`]), never a token.
pub(crate) const COOKIE_NAME: &str = "drover_session";

/// A credential a request presented over TCP.
#[derive(Clone)]
enum Credential {
    /// A bearer token's secret.
    Token(String),
    /// A login session's id, from the cookie.
    Session(String),
}

impl Credential {
    /// The role it carries now: `None` once the token is revoked or the session has ended.
    fn role(&self, http: &AppState) -> Option<Role> {
        match self {
            Credential::Token(token) => http.tokens.role_of(token),
            Credential::Session(id) => http
                .sessions
                .token_of(id)
                .and_then(|token_id| http.tokens.role_by_id(&token_id)),
        }
    }
}

tokio::task_local! {
    /// The authenticated caller of the request being handled.
    pub(crate) static CALLER: Caller;
}

/// The middleware: find the caller, refuse or run the request with it.
pub(crate) async fn authenticate(
    State(http): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // Login checks the token it is given; logout only clears a cookie; the dashboard's page
    // and assets hold no data (what they show comes from authenticated routes).
    if path == "/login"
        || path == "/logout"
        || (super::dashboard::is_public(path) && is_safe(request.method()))
    {
        // Served to anyone, but a TCP peer without a valid credential keeps no connection:
        // otherwise a `GET /login` every few seconds would hold a slot for good.
        let credentialed = match request.extensions().get::<Transport>() {
            Some(Transport::Unix) => true,
            _ => {
                let live = |id: &str| http.sessions.token_of(id).is_some();
                credential(request.headers(), live).is_some_and(|c| c.role(&http).is_some())
            }
        };
        let mut response = next.run(request).await;
        if !credentialed {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        return response;
    }
    let mut recheck = None;
    let caller = match request.extensions().get::<Transport>() {
        Some(Transport::Unix) => Caller::control(Via::Http),
        Some(Transport::Tcp { .. }) => {
            let live = |id: &str| http.sessions.token_of(id).is_some();
            let Some(credential) = credential(request.headers(), live) else {
                return unauthenticated(
                    "this request carries no token: send Authorization: Bearer <token> \
                     (made with `drover auth token create`)",
                );
            };
            let Some(role) = credential.role(&http) else {
                return unauthenticated(match credential {
                    Credential::Token(_) => {
                        "the token is not known to this daemon (or was revoked)"
                    }
                    Credential::Session(_) => {
                        "the login session has ended (logged out, expired, its token revoked, \
                         or the daemon restarted): log in again"
                    }
                });
            };
            let from_cookie = matches!(credential, Credential::Session(_));
            if from_cookie && !is_safe(request.method()) && request.headers().get(ORIGIN).is_none()
            {
                // A cookie is sent by the browser on its own; a state-changing request that
                // relies on one must show it comes from the daemon's own page (the guard has
                // already checked that an Origin, when present, is the daemon's own).
                return forbidden("a request authenticated by cookie must carry its Origin");
            }
            recheck = Some((credential, role));
            Caller {
                role,
                via: Via::Http,
            }
        }
        None => return unauthenticated("request without a transport"),
    };
    if !is_safe(request.method()) && !caller.role.allows(Role::Control) {
        return forbidden(&format!(
            "{} {} needs the control role; this credential has {}",
            request.method(),
            request.uri().path(),
            caller.role
        ));
    }
    let Some((credential, role)) = recheck else {
        return CALLER.scope(caller, next.run(request)).await;
    };
    if !is_safe(request.method()) {
        // A change is never cut half-way (a spawn, a stop waiting out its grace): its client
        // could not tell whether it took effect.
        return CALLER.scope(caller, next.run(request)).await;
    }
    // Checked again while the request runs, and while its body streams.
    let revoked = || revoked(Arc::clone(&http), credential.clone(), role);
    let response = tokio::select! {
        response = CALLER.scope(caller, next.run(request)) => response,
        () = revoked() => {
            return unauthenticated(
                "the credential was revoked (or its session ended) while the request ran",
            );
        }
    };
    let (parts, body) = response.into_parts();
    if axum::body::HttpBody::size_hint(&body).exact().is_some() {
        // Complete already (a JSON reply): nothing left to cut.
        return Response::from_parts(parts, body);
    }
    let sse = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let cut = Box::pin(revoked());
    let stream = futures::stream::unfold(
        (body.into_data_stream(), cut, false),
        move |(mut data, mut cut, ended)| async move {
            if ended {
                return None;
            }
            tokio::select! {
                biased;
                () = &mut cut => {
                    // An SSE client learns why its stream ended; any other body (a download)
                    // is aborted, so it cannot pass for a complete one.
                    let last = if sse {
                        Ok(bytes::Bytes::from_static(REVOKED_EVENT))
                    } else {
                        Err(axum::Error::new(std::io::Error::other(
                            "the credential was revoked",
                        )))
                    };
                    Some((last, (data, cut, true)))
                }
                item = data.next() => item.map(|item| (item, (data, cut, false))),
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The last event of an SSE stream whose credential was revoked (or whose session ended).
const REVOKED_EVENT: &[u8] = b"event: unauthorized\ndata: {\"error\":{\"code\":\"unauthorized\",\
\"message\":\"the credential of this stream was revoked or its session ended\"}}\n\n";

/// Resolves once `credential` no longer has `role` (its token revoked or its role changed, its
/// session ended): looked at every [`RECHECK`] (a stat of the token file; it is re-read only
/// when it changed).
async fn revoked(http: AppState, credential: Credential, role: Role) {
    let mut every = tokio::time::interval(RECHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        if credential.role(&http) != Some(role) {
            return;
        }
    }
}

fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The bearer token, else the login cookie's session: the first of its values that is `live`,
/// else the first (to be refused). A bearer header wins over a cookie.
fn credential(headers: &HeaderMap, live: impl Fn(&str) -> bool) -> Option<Credential> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Credential::Token(token.trim().to_owned()));
    }
    let first = cookies(headers).next()?;
    let id = cookies(headers).find(|id| live(id)).unwrap_or(first);
    Some(Credential::Session(id.to_owned()))
}

/// Every value of the login cookie the request carries: a page on another port of this host
/// can set a second `drover_session` (with a longer `Path`, sent first) to shadow ours.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME && !value.is_empty()).then_some(value)
        })
}

/// `401 unauthorized` with `WWW-Authenticate: Bearer`.
///
/// With `Connection: close`: a peer without a valid credential keeps no connection slot, so
/// unauthenticated requests every few seconds cannot hold the connection cap.
pub(crate) fn unauthenticated(message: &str) -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthorized, message).into_response();
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

/// `403 unauthorized`: the credential is valid but does not allow this.
fn forbidden(message: &str) -> Response {
    ApiError::forbidden(message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(credential: Option<Credential>) -> Option<(String, bool)> {
        credential.map(|c| match c {
            Credential::Token(t) => (t, false),
            Credential::Session(s) => (s, true),
        })
    }

    #[test]
    fn credentials_come_from_the_bearer_header_or_the_cookie() {
        let none_live = |_: &str| false;
        let mut headers = HeaderMap::new();
        assert_eq!(shown(credential(&headers, none_live)), None);
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=b; drover_session=drs_c; x=y"),
        );
        assert_eq!(
            shown(credential(&headers, none_live)),
            Some(("drs_c".into(), true))
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer drv_b"));
        assert_eq!(
            shown(credential(&headers, none_live)),
            Some(("drv_b".into(), false))
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic eHk="));
        assert_eq!(
            shown(credential(&headers, none_live)),
            None,
            "another scheme is no token"
        );
    }

    #[test]
    fn a_cookie_set_elsewhere_cannot_shadow_the_live_session() {
        // Another port's page set a second `drover_session` with a longer path: browsers
        // send it first.
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("drover_session=drs_planted; drover_session=drs_mine"),
        );
        let live = |id: &str| id == "drs_mine";
        assert_eq!(
            shown(credential(&headers, live)),
            Some(("drs_mine".into(), true))
        );
        // Neither live: the first is refused as usual.
        assert_eq!(
            shown(credential(&headers, |_: &str| false)),
            Some(("drs_planted".into(), true))
        );
    }
}
