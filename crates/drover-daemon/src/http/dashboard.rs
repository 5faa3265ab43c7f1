//! The dashboard: one page and its script and style, embedded in the binary and served at `/`
//! from the daemon's own origin, so the page's requests carry the login cookie and pass the
//! Origin check with no CORS anywhere.
//!
//! The assets are plain files under `assets/dashboard/` (an ES module and a stylesheet, no build
//! step and no Node.js), included at compile time. The page holds no data and no secret: it is
//! served without a credential, and everything it shows comes from the documented API
//! (`/v1/session`, `/v1/agents`, the SSE streams) under the cookie `/login` sets. A strict
//! Content-Security-Policy allows only the daemon's own scripts, styles and connections.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use super::ApiError;

const INDEX: &str = include_str!("../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../assets/dashboard/app.css");
const TRANSCRIPT: &str = include_str!("../../assets/dashboard/transcript.js");

/// Only the daemon's own scripts, styles and connections; no frames, no plugins, no forms
/// posting elsewhere.
pub(super) const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                      form-action 'self'; frame-ancestors 'none'";

/// `GET /`: the page.
pub(super) async fn index() -> Response {
    asset_response(INDEX, "text/html; charset=utf-8")
}

/// `GET /ui/{file}`: the page's scripts (the app and its transcript renderer) and stylesheet.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset_response(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => asset_response(STYLE, "text/css; charset=utf-8"),
        "transcript.js" => asset_response(TRANSCRIPT, "text/javascript; charset=utf-8"),
        _ => ApiError::new(
            drover_proto::ErrorCode::NotFound,
            format!("no asset {file}"),
        )
        .into_response(),
    }
}

fn asset_response(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Embedded in this binary: a new daemon brings new assets, so revalidate every load.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Whether `path` is the page or one of its assets (served without a credential).
pub(super) fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}
