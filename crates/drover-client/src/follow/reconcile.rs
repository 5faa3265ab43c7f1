//! Re-checking followed agents over the control socket, when the live stream cannot be
//! trusted to have said everything (a missed event, a restart, silence).

use std::collections::BTreeMap;

use drover_proto::{AgentId, AgentInfo};

use super::{Follower, Selection};
use crate::ClientError;

impl Follower<'_> {
    /// Re-read the state of every followed agent (and, for open selections, find new ones),
    /// and read the store once more for each: covers anything the PUB socket did not bring.
    pub(super) async fn reconcile(&mut self) -> Result<(), ClientError> {
        match self.selection.clone() {
            Selection::Agents(_) => {
                let ids: Vec<AgentId> = self
                    .tracks
                    .iter()
                    .filter(|(_, t)| !t.done)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    match self.client.get(&id.to_string()).await {
                        Ok(info) => self.refresh(info),
                        Err(ClientError::Remote(e))
                            if e.code == drover_proto::ErrorCode::NotFound =>
                        {
                            if let Some(track) = self.tracks.get_mut(&id) {
                                track.done = true;
                            }
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
            Selection::Labels(labels) => {
                for info in self.list(labels).await? {
                    self.refresh_or_add(info).await?;
                }
            }
            Selection::All => {
                for info in self.list(BTreeMap::new()).await? {
                    self.refresh_or_add(info).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn refresh_or_add(&mut self, info: AgentInfo) -> Result<(), ClientError> {
        if self.tracks.contains_key(&info.id) {
            self.refresh(info);
            Ok(())
        } else {
            self.add(info, false).await
        }
    }

    pub(super) fn refresh(&mut self, info: AgentInfo) {
        if info.state().is_terminal() {
            self.mark_ended(info);
        } else if let Some(track) = self.tracks.get_mut(&info.id) {
            track.info = info;
            track.caught_up = false;
        }
    }

    pub(super) fn mark_ended(&mut self, info: AgentInfo) {
        if let Some(track) = self.tracks.get_mut(&info.id) {
            if !track.done {
                track.caught_up = false;
                track.ended = Some(info);
            }
        }
    }

    pub(super) async fn discover(&mut self, id: AgentId) -> Result<(), ClientError> {
        if self.tracks.contains_key(&id) || self.ignored.contains(&id) {
            return Ok(());
        }
        let info = match self.client.get(&id.to_string()).await {
            Ok(info) => info,
            Err(ClientError::Remote(e)) if e.code == drover_proto::ErrorCode::NotFound => {
                return Ok(())
            }
            Err(error) => return Err(error),
        };
        if let Selection::Labels(labels) = &self.selection {
            if !labels.iter().all(|(k, v)| info.labels.get(k) == Some(v)) {
                self.ignored.insert(id);
                return Ok(());
            }
        }
        self.add(info, false).await
    }
}
