//! `drover-client`: the async Rust client of a Drover daemon.
//!
//! It speaks protocol v1 over a libzmq DEALER socket (CURVE on TCP, see [`CurveClient`]): many requests in flight on one connection,
//! correlated by id, each with its own deadline. After a deadline passes the connection is
//! replaced by a fresh socket, so a late reply can never be taken for a later request. The
//! [`follow`] module adds lossless live following of logs over the PUB socket, and
//! [`Client::follow_events`] resumable following of lifecycle events.
//!
//! It does not start daemons, parse CLI flags or print anything; the `drover` binary does that.

mod client;
mod connection;
mod error;
mod events;
pub mod follow;
mod keys;

pub use client::{Client, ClientOptions};
pub use error::ClientError;
pub use events::EventFollower;
pub use follow::{FollowEvent, FollowOptions, Follower, Selection};
pub use keys::{CurveClient, CurveKeys};
