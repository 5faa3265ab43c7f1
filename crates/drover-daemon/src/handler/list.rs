//! `list`: agents by state and labels, oldest first, one page at a time. A page ends at `limit`
//! agents or at a byte budget under the frame limit, whichever comes first, and names the cursor
//! of the next one; specs are left out unless asked for.

use drover_proto::limits::{MAX_LIST_LABELS, MAX_LIST_LIMIT};
use drover_proto::op::{ListArgs, ListResult};
use drover_proto::{AgentId, AgentInfo, AgentSpec, ErrorBody, ErrorCode};
use drover_store::ListFilter;

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

/// Room a page leaves under `max_frame` for the envelope, the echoed id and `next_cursor`.
pub(crate) const PAGE_RESERVE: usize = 64 * 1024;

pub(crate) fn handle(shared: &Shared, args: ListArgs) -> OpResult {
    if args.labels.len() > MAX_LIST_LABELS {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "{} labels to filter on; at most {MAX_LIST_LABELS}",
                args.labels.len()
            ),
        ));
    }
    let after = args.cursor.as_deref().map(parse_cursor).transpose()?;
    // 0 counts as 1, as in `read_logs`: an empty page would end the listing (no cursor).
    let limit = args
        .limit
        .unwrap_or(MAX_LIST_LIMIT)
        .clamp(1, MAX_LIST_LIMIT);
    let budget = page_budget(shared.config.max_frame);
    let filter = ListFilter {
        state: args.state,
        labels: args.labels,
        // One more than the page holds, to learn whether another page follows.
        limit: Some(limit.saturating_add(1)),
        after,
    };
    let mut page = Page::new(limit, budget);
    let mut too_large = None;
    shared
        .store
        .list_each(&filter, |mut info| {
            // A live agent's activity changes with every turn; the registry has it as of its
            // last phase change.
            if info.activity.is_some() {
                if let Some(live) = shared.live(info.id) {
                    info.activity = live.info.borrow().activity.clone();
                }
            }
            if !args.specs {
                info.spec = AgentSpec::default();
            }
            match page.offer(info) {
                Offer::Kept => true,
                Offer::Full => false,
                Offer::Alone(id, size) => {
                    too_large = Some((id, size));
                    false
                }
            }
        })
        .map_err(store_error)?;
    if let Some((id, size)) = too_large {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "agent {id} alone takes {size} bytes, more than a list page may hold \
                 ({budget} bytes under max_frame); list it without specs or use get"
            ),
        ));
    }
    Ok(Reply::List(page.finish()))
}

/// Bytes of agents one page may hold.
pub(crate) fn page_budget(max_frame: usize) -> usize {
    max_frame.saturating_sub(PAGE_RESERVE).max(max_frame / 2)
}

/// What became of an agent offered to a page.
enum Offer {
    /// It is in the page.
    Kept,
    /// The page is full: it starts the next one.
    Full,
    /// It is the first of its page and alone exceeds the budget.
    Alone(AgentId, usize),
}

/// A page being filled.
struct Page {
    agents: Vec<AgentInfo>,
    bytes: usize,
    limit: usize,
    budget: usize,
    more: bool,
}

impl Page {
    fn new(limit: u32, budget: usize) -> Page {
        Page {
            agents: Vec::new(),
            bytes: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            budget,
            more: false,
        }
    }

    fn offer(&mut self, info: AgentInfo) -> Offer {
        // An agent that cannot be encoded is measured as too large; the reply's own encoding
        // would fail on it the same way.
        let size = drover_proto::encode(&info).map_or(usize::MAX, |bytes| bytes.len());
        if self.agents.len() >= self.limit {
            self.more = true;
            return Offer::Full;
        }
        if self.bytes.saturating_add(size) > self.budget {
            if self.agents.is_empty() {
                return Offer::Alone(info.id, size);
            }
            self.more = true;
            return Offer::Full;
        }
        self.bytes += size;
        self.agents.push(info);
        Offer::Kept
    }

    fn finish(self) -> ListResult {
        let next_cursor = self.more.then(|| self.agents.last().map(cursor)).flatten();
        ListResult {
            agents: self.agents,
            next_cursor,
        }
    }
}

/// The cursor after `agent`: its place in list order, `<created_at>.<id>` (opaque to clients).
fn cursor(agent: &AgentInfo) -> String {
    format!("{}.{}", agent.created_at, agent.id)
}

fn parse_cursor(text: &str) -> Result<(i64, AgentId), ErrorBody> {
    let bad = || {
        ErrorBody::new(
            ErrorCode::BadRequest,
            format!("invalid list cursor {text:?}"),
        )
    };
    let (created_at, id) = text.split_once('.').ok_or_else(bad)?;
    Ok((
        created_at.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = AgentId::new();
        let text = format!("1700000000000000000.{id}");
        assert_eq!(
            parse_cursor(&text).ok(),
            Some((1_700_000_000_000_000_000, id))
        );
        for bad in ["", "12", "x.y", &format!("abc.{id}"), "12.not-a-uuid"] {
            let error = parse_cursor(bad).expect_err(bad);
            assert_eq!(error.code, ErrorCode::BadRequest);
        }
    }

    #[test]
    fn the_budget_stays_under_the_frame() {
        assert_eq!(page_budget(10 << 20), (10 << 20) - PAGE_RESERVE);
        assert_eq!(page_budget(1024), 512);
    }
}
