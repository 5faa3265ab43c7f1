//! The log ends each heartbeat carries: for every live agent that printed, the seq after the
//! last record of it the publisher sent or dropped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use drover_proto::limits::MAX_HEARTBEAT_LOG_ENDS;
use drover_proto::{AgentId, Seq};

use super::Outgoing;

/// For each agent, the seq after the last record of its batches the full queue refused: the
/// next heartbeat's log ends take them in. A leaf lock, taken only when the queue is full and
/// once at each heartbeat.
#[derive(Clone, Debug, Default)]
pub(super) struct Refused(Arc<Mutex<HashMap<AgentId, Seq>>>);

impl Refused {
    /// Note that `agent`'s records below `end` were refused.
    pub(super) fn note(&self, agent: AgentId, end: Seq) {
        let mut refused = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = refused.entry(agent).or_insert(end);
        *entry = (*entry).max(end);
    }

    /// Everything noted since the last take.
    pub(super) fn take(&self) -> HashMap<AgentId, Seq> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The log ends, bounded by the live agents: those no longer live are forgotten at each
/// heartbeat.
#[derive(Debug, Default)]
pub(super) struct LogEnds {
    ends: BTreeMap<AgentId, Seq>,
    /// With more agents than one heartbeat carries, the last one the previous heartbeat
    /// carried: the next starts after it.
    cursor: Option<AgentId>,
}

impl LogEnds {
    /// Raise `agent`'s end to `end` (never lower it).
    fn raise(&mut self, agent: AgentId, end: Seq) {
        let entry = self.ends.entry(agent).or_insert(end);
        *entry = (*entry).max(end);
    }

    /// Take in the records of queued messages about to be sent.
    pub(super) fn take_sent(&mut self, messages: &[Outgoing]) {
        for message in messages {
            if let Outgoing::Log(agent, records) = message {
                if let Some(last) = records.last() {
                    self.raise(*agent, last.seq.next());
                }
            }
        }
    }

    /// Take in the records the full queue refused.
    pub(super) fn take_refused(&mut self, refused: HashMap<AgentId, Seq>) {
        for (agent, end) in refused {
            self.raise(agent, end);
        }
    }

    /// The ends one heartbeat carries: agents no longer live (`is_live` says) are forgotten
    /// first, and past [`MAX_HEARTBEAT_LOG_ENDS`] agents each heartbeat carries the next ones
    /// after those the previous one carried, in id order, wrapping around.
    pub(super) fn for_heartbeat(
        &mut self,
        is_live: impl Fn(&AgentId) -> bool,
    ) -> BTreeMap<AgentId, Seq> {
        self.ends.retain(|agent, _| is_live(agent));
        if self.ends.len() <= MAX_HEARTBEAT_LOG_ENDS {
            self.cursor = None;
            return self.ends.clone();
        }
        let after = match self.cursor {
            Some(cursor) => self.ends.range((Bound::Excluded(cursor), Bound::Unbounded)),
            None => self.ends.range(..),
        };
        // Fewer than the map holds, so no agent comes twice.
        let taken: Vec<(AgentId, Seq)> = after
            .chain(self.ends.range(..))
            .take(MAX_HEARTBEAT_LOG_ENDS)
            .map(|(agent, end)| (*agent, *end))
            .collect();
        self.cursor = taken.last().map(|(agent, _)| *agent);
        taken.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{LogEnds, Outgoing, Refused, MAX_HEARTBEAT_LOG_ENDS};
    use crate::publish::tests::records;
    use drover_proto::{AgentId, Seq};

    #[test]
    fn ends_count_what_was_sent_and_refused_for_live_agents_only() {
        let (a, b, c) = (AgentId::new(), AgentId::new(), AgentId::new());
        let mut ends = LogEnds::default();
        ends.take_sent(&[
            Outgoing::Log(a, records(1..=5)),
            Outgoing::Log(b, records(1..=3)),
        ]);
        let refused = Refused::default();
        refused.note(c, Seq(8));
        refused.note(a, Seq(4));
        ends.take_refused(refused.take());
        assert!(refused.take().is_empty(), "a take empties the notes");
        let carried = ends.for_heartbeat(|_| true);
        assert_eq!(
            carried,
            [(a, Seq(6)), (b, Seq(4)), (c, Seq(8))].into(),
            "never lowered"
        );
        ends.take_sent(&[Outgoing::Log(b, records(4..=4))]);
        let carried = ends.for_heartbeat(|agent| *agent != c);
        assert_eq!(carried, [(a, Seq(6)), (b, Seq(5))].into());
        assert_eq!(
            ends.for_heartbeat(|_| true).len(),
            2,
            "c is forgotten once it is not live"
        );
    }

    #[test]
    fn past_the_limit_heartbeats_take_the_agents_in_turn_as_agents_come_and_go() {
        let mut ends = LogEnds::default();
        let mut agents: Vec<AgentId> = Vec::new();
        let add = |ends: &mut LogEnds, agents: &mut Vec<AgentId>, n: usize| {
            for _ in 0..n {
                let agent = AgentId::new();
                ends.take_sent(&[Outgoing::Log(agent, records(1..=1))]);
                agents.push(agent);
            }
        };
        add(&mut ends, &mut agents, MAX_HEARTBEAT_LOG_ENDS + 100);
        let first = ends.for_heartbeat(|_| true);
        assert_eq!(first.len(), MAX_HEARTBEAT_LOG_ENDS);
        // Agents come and go between two heartbeats: the next still starts where the last
        // one stopped.
        let gone = agents[10];
        add(&mut ends, &mut agents, 50);
        let second = ends.for_heartbeat(|agent| *agent != gone);
        assert_eq!(second.len(), MAX_HEARTBEAT_LOG_ENDS);
        assert!(!second.contains_key(&gone));
        let covered: std::collections::HashSet<&AgentId> =
            first.keys().chain(second.keys()).collect();
        assert_eq!(
            covered.len(),
            agents.len(),
            "two heartbeats carry every agent (the gone one in the first)"
        );
        let unseen_first: Vec<&AgentId> =
            agents.iter().filter(|a| !first.contains_key(a)).collect();
        assert!(
            unseen_first.iter().all(|a| second.contains_key(*a)),
            "what the first left out comes next"
        );
    }
}
