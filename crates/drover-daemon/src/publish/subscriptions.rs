//! Which topic prefixes the subscribers of one XPUB socket want.

use std::collections::{HashMap, HashSet};

/// Distinct prefixes one XPUB socket keeps track of; past this many (a subscriber making up
/// topics) the socket is taken to want everything from then on.
const MOST_PREFIXES: usize = 4096;

/// The topic prefixes subscribed on one XPUB socket, from the subscription messages libzmq
/// passes up: `1` and the prefix when a prefix gets its first subscriber on the socket, `0` and
/// the prefix when its last one unsubscribes or goes away.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// The prefixes, and how many there are of each length (for lookups by a topic's prefixes).
    prefixes: HashSet<Vec<u8>>,
    lengths: HashMap<usize, usize>,
    /// Too many prefixes were seen: everything is wanted.
    saturated: bool,
}

impl Subscriptions {
    /// Take in every subscription message waiting on `socket` (never blocks).
    pub(super) fn read(&mut self, socket: &zmq::Socket) {
        // All of them: a round decided without one libzmq has taken in could skip a batch its
        // subscriber should get (see the module documentation), so `EINTR` is retried.
        while let Ok(message) = drover_zmq::again(|| socket.recv_bytes(zmq::DONTWAIT)) {
            self.apply(&message);
        }
    }

    /// One subscription message.
    pub(super) fn apply(&mut self, message: &[u8]) {
        let Some((&kind, prefix)) = message.split_first() else {
            return;
        };
        match kind {
            1 => {
                if self.prefixes.contains(prefix) {
                    return;
                }
                if self.prefixes.len() >= MOST_PREFIXES {
                    self.saturated = true;
                    return;
                }
                self.prefixes.insert(prefix.to_vec());
                *self.lengths.entry(prefix.len()).or_default() += 1;
            }
            0 if self.prefixes.remove(prefix) => {
                if let Some(count) = self.lengths.get_mut(&prefix.len()) {
                    *count -= 1;
                    if *count == 0 {
                        self.lengths.remove(&prefix.len());
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether a subscriber of this socket would receive `topic`.
    pub(super) fn matches(&self, topic: &[u8]) -> bool {
        self.saturated
            || self
                .lengths
                .keys()
                .any(|&len| topic.get(..len).is_some_and(|p| self.prefixes.contains(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::Subscriptions;

    #[test]
    fn prefixes_come_and_go_and_too_many_mean_everything() {
        let mut subs = Subscriptions::default();
        let topic = b"log.01a23908-abd3-76ee-b2cb-f41daf8a5614";
        assert!(!subs.matches(topic));
        subs.apply(b"\x01hb");
        subs.apply(b"\x01evt.");
        assert!(!subs.matches(topic));
        subs.apply(b"\x01log.01a23908-abd3-76ee-b2cb-f41daf8a5614");
        assert!(subs.matches(topic));
        assert!(!subs.matches(b"log.01a23908-abd3-76ee-b2cb-f41daf8a5615"));
        subs.apply(b"\x01log.");
        subs.apply(b"\x00log.01a23908-abd3-76ee-b2cb-f41daf8a5614");
        assert!(subs.matches(topic), "log. still matches");
        subs.apply(b"\x00log.");
        assert!(!subs.matches(topic));
        subs.apply(b"\x01");
        assert!(subs.matches(topic), "the empty prefix matches everything");
        subs.apply(b"\x00");
        assert!(!subs.matches(topic));
        // Malformed messages change nothing.
        subs.apply(b"");
        subs.apply(b"\x02log.");
        assert!(!subs.matches(topic));
        for n in 0..super::MOST_PREFIXES {
            subs.apply(format!("\x01x{n}").as_bytes());
        }
        assert!(subs.matches(topic), "saturated: everything is wanted");
    }
}
