//! Browser login, as Jupyter does it: the user pastes a token once into `GET /login`'s form (or
//! a page posts it as JSON), and the daemon answers with an HttpOnly, SameSite=Strict cookie
//! holding a session id ([`super::session`]), so no script on a page ever holds the token and
//! the cookie never carries it. The session carries the token's role ([`super::auth`]):
//! revoking the token, or logging out, ends it; it lasts at most [`super::session::TTL`].

use axum::extract::{FromRequest, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::{unauthenticated, COOKIE_NAME};
use super::body::RawBody;
use super::listen::Transport;
use super::{ApiError, AppState};

const FORM: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>drover login</title></head>
<body>
<form method="post" action="/login">
<label>Token <input type="password" name="token" autocomplete="off" autofocus></label>
<button type="submit">Log in</button>
</form>
</body></html>
"#;

/// `GET /login`: the form, under the dashboard's content policy (no framing: a page that
/// framed the form could trick a user into typing a token into it).
pub(super) async fn form() -> Response {
    with_policy(Html(FORM).into_response())
}

fn with_policy(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(super::dashboard::POLICY),
    );
    response
}

#[derive(Deserialize)]
struct LoginJson {
    token: String,
}

/// `POST /login` with `{"token": "..."}` or the form field `token`: sets the cookie.
pub(super) async fn login(State(http): State<AppState>, request: Request) -> Response {
    let tls = matches!(
        request.extensions().get::<Transport>(),
        Some(Transport::Tcp { tls: true, .. })
    );
    // Before any credential: the body (at most 4 KiB) has the head's time limit, so a peer
    // trickling it cannot hold a connection slot.
    let within = http.shared.config.http_limits.header_timeout;
    let body = match tokio::time::timeout(within, RawBody::from_request(request, &())).await {
        Ok(Ok(RawBody(body))) => body,
        Ok(Err(error)) => return error.into_response(),
        Err(_) => {
            let mut response = ApiError::request_timeout(format!(
                "the login body did not arrive within {} s",
                within.as_secs()
            ))
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    // JSON when the body is JSON (whatever its Content-Type: `curl -d` says form), else the
    // form field.
    let json = serde_json::from_slice::<LoginJson>(&body).ok();
    let is_form = json.is_none();
    let token = json.map(|l| l.token).or_else(|| form_field(&body, "token"));
    let Some(token) = token else {
        return ApiError::bad_request("send {\"token\": \"...\"} or the form field token")
            .into_response();
    };
    let Some((token_id, role)) = http.tokens.entry_of(&token) else {
        return unauthenticated("the token is not known to this daemon (or was revoked)");
    };
    let session = match http.sessions.start(token_id) {
        Ok(session) => session,
        Err(error) => {
            return ApiError::new(
                drover_proto::ErrorCode::Internal,
                format!("starting a session: {error}"),
            )
            .into_response()
        }
    };
    let secure = if tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        super::session::TTL.as_secs()
    );
    let mut response = if is_form {
        with_policy(
            Html(format!(
                "<!doctype html><p>Logged in with the {role} role.</p>\n"
            ))
            .into_response(),
        )
    } else {
        Json(serde_json::json!({ "role": role.as_str() })).into_response()
    };
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(SET_COOKIE, value);
            clear_old_cookie(&mut response);
            response
        }
        // Session ids are base64url: this cannot happen.
        Err(_) => ApiError::new(drover_proto::ErrorCode::Internal, "an unusable session id")
            .into_response(),
    }
}

/// `POST /logout`: ends the cookie's session here and clears the cookie.
pub(super) async fn logout(State(http): State<AppState>, headers: HeaderMap) -> Response {
    for session in super::auth::cookies(&headers) {
        http.sessions.end(session);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("drover_session=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/"),
    );
    clear_old_cookie(&mut response);
    response
}

/// Builds before sessions kept the token itself in a `drover_token` cookie, which browsers go on
/// sending to every port of the host: login and logout clear it.
fn clear_old_cookie(response: &mut Response) {
    response.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_static("drover_token=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/"),
    );
}

/// One field of an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))?
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `GET /v1/session`: the role the request's credential carries (`{"role": "read"}`), so a page
/// logged in by cookie (which its scripts cannot read) knows whether to offer actions.
pub(super) async fn session() -> Response {
    match super::auth::CALLER.try_with(|caller| caller.role) {
        Ok(role) => Json(serde_json::json!({ "role": role.as_str() })).into_response(),
        Err(_) => unauthenticated("request without an authenticated caller"),
    }
}

#[cfg(test)]
mod tests {
    use super::form_field;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&token=drv_a%2Db+c", "token").as_deref(),
            Some("drv_a-b c")
        );
        assert_eq!(form_field(b"token=%zz", "token"), None);
        assert_eq!(form_field(b"other=1", "token"), None);
    }
}
