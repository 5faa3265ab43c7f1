//! `drover-daemon`: the Drover daemon, as a library.
//!
//! [`bind`] binds every socket (ZeroMQ control ROUTER, ZeroMQ PUB, HTTP, optional ipc) and
//! returns [`Listeners`] naming the real addresses; [`run`] serves until the shutdown future
//! resolves, then stops agents (or leaves them, per config), flushes the store and returns. Tests
//! bind port 0 and run the real daemon in-process.
//!
//! One agent is one supervisor actor (from `drover-supervisor`) behind a handle; its output goes
//! straight into the store and onto the PUB socket. Requests from ZeroMQ and HTTP go through the
//! same handlers (`handler/`, one file per op, dispatched by an exhaustive match).
//!
//! It does not parse command lines or print anything but the ready line's data; `drover-cli`
//! does that.

mod agent;
pub mod auth;
mod backlog;
mod caller;
mod config;
mod control;
mod daemon;
mod error;
mod event;
pub mod fdlimit;
mod handler;
mod holders;
mod http;
mod listeners;
mod lock;
mod placeholder;
mod publish;
mod reading;
mod restart;
mod restarting;
mod retention;
mod signals;
pub mod tls;
pub mod token;

pub use config::{Config, ShutdownPolicy};
pub use daemon::run;
pub use error::DaemonError;
pub use http::listen::HttpLimits;
pub use listeners::{bind, Addresses, Listeners};
