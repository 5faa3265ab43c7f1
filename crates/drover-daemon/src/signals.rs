//! Signals the daemon inherited as ignored are not passed on to its agents: see
//! [`drover_holder::ignored`], which the holder spawner shares.

use tokio::signal::unix::Signal;

/// Install a handler for each signal this process ignores (inside a tokio runtime), warning of
/// any that cannot be handled. The returned streams may be dropped: the handlers stay.
pub(crate) fn handle_ignored() -> Vec<Signal> {
    drover_holder::ignored::handle_ignored(|raw, error| {
        tracing::warn!(signal = raw, %error, "the signal stays ignored for agents");
    })
}
