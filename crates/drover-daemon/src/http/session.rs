//! Browser sessions: what the login cookie holds instead of the token.
//!
//! `POST /login` checks a token and answers with a cookie holding a fresh session id, not the
//! token: browsers send a host's cookies to every port of that host (and `SameSite` treats them
//! as one site), so any other HTTP service on the same host name would receive what the cookie
//! holds. A session id is worth less than the token it stands for: it lives at most [`TTL`],
//! ends at `POST /logout`, ends with its token (revoked; a changed role applies to it at once),
//! and is known only to this daemon process (a restart logs every browser out).
//!
//! Ids are `drs_` and 43 base64url characters (256 bits from the operating system's CSPRNG);
//! only their SHA-256 is kept, in memory, at most [`MAX_SESSIONS`] of them (the oldest goes
//! first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use sha2::{Digest, Sha256};

/// What every session id starts with.
pub(crate) const PREFIX: &str = "drs_";

/// How long a session lasts after its login.
pub(crate) const TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at once; a login beyond this ends the oldest.
pub(crate) const MAX_SESSIONS: usize = 1024;

/// Sessions one token may hold at once; a login beyond this ends that token's oldest, so one
/// token logging in over and over cannot push other tokens' sessions out.
pub(crate) const MAX_PER_TOKEN: usize = 16;

/// The daemon's live sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    // A std Mutex: held for a map operation, never across an await.
    live: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug)]
struct Session {
    /// The id of the token the login presented (its entry in the token file).
    token_id: String,
    started: Instant,
    /// The wall-clock start too: the monotonic clock stops while the machine sleeps, and a
    /// session must not outlive [`TTL`] of real time on a laptop that was suspended.
    started_wall: SystemTime,
}

impl Session {
    /// Past [`TTL`] by either clock: the monotonic one (immune to the wall clock being set
    /// back) or the wall clock (which counts a suspend).
    fn is_expired(&self) -> bool {
        let wall = SystemTime::now()
            .duration_since(self.started_wall)
            .unwrap_or(Duration::ZERO);
        self.started.elapsed() >= TTL || wall >= TTL
    }
}

impl Sessions {
    /// Start a session for the token with id `token_id`; its secret id, for the cookie.
    pub(crate) fn start(&self, token_id: String) -> std::io::Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
        let secret = format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let mut live = self.lock();
        live.retain(|_, session| !session.is_expired());
        let oldest = |live: &HashMap<[u8; 32], Session>, of_token: Option<&str>| {
            live.iter()
                .filter(|(_, s)| of_token.is_none_or(|t| s.token_id == t))
                .min_by_key(|(_, session)| session.started)
                .map(|(key, _)| *key)
        };
        let own = live.values().filter(|s| s.token_id == token_id).count();
        let evict = if own >= MAX_PER_TOKEN {
            oldest(&live, Some(&token_id))
        } else if live.len() >= MAX_SESSIONS {
            oldest(&live, None)
        } else {
            None
        };
        if let Some(key) = evict {
            live.remove(&key);
        }
        live.insert(
            digest(&secret),
            Session {
                token_id,
                started: Instant::now(),
                started_wall: SystemTime::now(),
            },
        );
        Ok(secret)
    }

    /// The token id behind a session id, if the session is live.
    pub(crate) fn token_of(&self, secret: &str) -> Option<String> {
        if !secret.starts_with(PREFIX) {
            return None;
        }
        let key = digest(secret);
        let mut live = self.lock();
        let session = live.get(&key)?;
        if session.is_expired() {
            live.remove(&key);
            return None;
        }
        Some(session.token_id.clone())
    }

    /// End a session (logout); nothing happens for an unknown one.
    pub(crate) fn end(&self, secret: &str) {
        self.lock().remove(&digest(secret));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sessions are looked up by the SHA-256 of their id: the map's comparisons then tell a
/// guesser nothing about any id (finding an id from its hash's prefix is a preimage search).
fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_names_its_token_until_it_ends_and_ids_are_fresh() {
        let sessions = Sessions::default();
        let one = sessions.start("tok1".into()).unwrap();
        let two = sessions.start("tok1".into()).unwrap();
        assert_ne!(one, two);
        assert!(one.starts_with(PREFIX) && one.len() == PREFIX.len() + 43);
        assert_eq!(sessions.token_of(&one).as_deref(), Some("tok1"));
        sessions.end(&one);
        assert_eq!(sessions.token_of(&one), None);
        assert_eq!(sessions.token_of(&two).as_deref(), Some("tok1"));
        assert_eq!(sessions.token_of("drs_not-a-session"), None);
        assert_eq!(sessions.token_of("drv_a-token-is-not-a-session"), None);
    }

    #[test]
    fn a_session_ends_after_its_ttl_of_wall_time_though_the_monotonic_clock_slept() {
        let sessions = Sessions::default();
        let id = sessions.start("tok".into()).unwrap();
        // As after a suspend: little monotonic time, the whole TTL of wall time.
        for session in sessions.lock().values_mut() {
            session.started_wall = SystemTime::now() - TTL;
        }
        assert_eq!(sessions.token_of(&id), None);
        // A wall clock set back alone does not end one early, nor keep one alive.
        let id = sessions.start("tok".into()).unwrap();
        for session in sessions.lock().values_mut() {
            session.started_wall = SystemTime::now() + TTL;
        }
        assert_eq!(sessions.token_of(&id).as_deref(), Some("tok"));
    }

    #[test]
    fn the_oldest_session_goes_beyond_the_caps() {
        let sessions = Sessions::default();
        let first = sessions.start("t0".into()).unwrap();
        for n in 1..MAX_SESSIONS {
            sessions.start(format!("t{n}")).unwrap();
        }
        assert!(sessions.token_of(&first).is_some());
        sessions.start("another".into()).unwrap();
        assert_eq!(sessions.token_of(&first), None);
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
        // One token logging in again and again only ends its own oldest session.
        let sessions = Sessions::default();
        let other = sessions.start("other".into()).unwrap();
        let mine = sessions.start("mine".into()).unwrap();
        for _ in 1..MAX_PER_TOKEN {
            sessions.start("mine".into()).unwrap();
        }
        assert!(sessions.token_of(&mine).is_some());
        sessions.start("mine".into()).unwrap();
        assert_eq!(sessions.token_of(&mine), None);
        assert!(sessions.token_of(&other).is_some());
    }
}
