//! Query strings as ordered pairs, so a key may repeat (`label=a=1&label=b=2`) and every
//! ill-typed value is a `bad_request` naming the parameter. Unknown parameters are ignored, as
//! unknown fields are on the control socket.

use std::str::FromStr;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::ApiError;

/// The request's query parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The last value of `name`, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `name` parsed as a `T`, if given.
    pub(crate) fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|value| {
                value.parse().map_err(|_| {
                    ApiError::bad_request(format!("query parameter {name}={value:?} is invalid"))
                })
            })
            .transpose()
    }

    /// A time: unix nanoseconds, a duration ago (`10m`, `2h`) or RFC 3339
    /// (`2026-12-02T11:00:00Z`), as unix nanoseconds.
    pub(crate) fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|value| {
                drover_proto::time::parse_time(value, drover_proto::now_ns())
                    .map_err(|e| ApiError::bad_request(format!("query parameter {name}: {e}")))
            })
            .transpose()
    }

    /// A boolean flag: `true`/`1` or `false`/`0`; absent is false.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(value) => Err(ApiError::bad_request(format!(
                "query parameter {name}={value:?} is not true or false"
            ))),
        }
    }
}
