//! Records the store refused, kept in order until it takes them again.
//!
//! The supervisor numbers records and moves on; the store accepts only the next seq. If an
//! append fails (disk full, an I/O error), dropping the batch would make every later append
//! fail too. Instead the batch waits here, later batches queue behind it, and the observer
//! retries. The backlog is bounded in bytes by its owner, which pauses the agent when it is
//! full, so a failing disk stops output at the source instead of losing it.

use drover_proto::Record;
use drover_store::StoreError;

/// Records waiting for the store, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    records: Vec<Record>,
    bytes: usize,
}

impl Backlog {
    /// Whether nothing is waiting.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes of record data waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Store `records` with `append`, or queue them behind what is already waiting. On
    /// failure they stay queued, in order: `Err(Some(error))` when the store refused them,
    /// `Err(None)` when earlier records wait (only [`Backlog::retry`] offers the backlog again:
    /// re-offering megabytes with every new batch would make a full disk cost O(n²)).
    pub(crate) fn store(
        &mut self,
        records: &[Record],
        append: impl Fn(&[Record]) -> Result<(), StoreError>,
    ) -> Result<(), Option<StoreError>> {
        if !self.records.is_empty() {
            self.push(records);
            return Err(None);
        }
        if let Err(error) = append(records) {
            self.push(records);
            return Err(Some(error));
        }
        Ok(())
    }

    /// Try to store everything waiting.
    pub(crate) fn retry(
        &mut self,
        append: impl Fn(&[Record]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.records.is_empty() {
            return Ok(());
        }
        append(&self.records)?;
        self.records.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Give up on what is waiting (the agent ended and the store still refuses); returns the
    /// seq range lost, for the log.
    pub(crate) fn abandon(&mut self) -> Option<(u64, u64)> {
        let range = match (self.records.first(), self.records.last()) {
            (Some(first), Some(last)) => Some((first.seq.0, last.seq.0)),
            _ => None,
        };
        self.records.clear();
        self.bytes = 0;
        range
    }

    fn push(&mut self, records: &[Record]) {
        self.bytes += records.iter().map(|r| r.data.len()).sum::<usize>();
        self.records.extend_from_slice(records);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use drover_proto::{AgentId, Seq, StreamKind};

    use super::*;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
        seqs.map(|seq| Record {
            seq: Seq(seq),
            ts: 0,
            stream: StreamKind::Stdout,
            data: vec![b'x'; 10],
            partial: false,
        })
        .collect()
    }

    fn disk_full() -> StoreError {
        StoreError::NotFound(format!("{}", AgentId::new()))
    }

    #[test]
    fn refused_batches_wait_in_order_and_are_stored_once_the_store_recovers() {
        let stored = RefCell::new(Vec::<u64>::new());
        let failing = Cell::new(false);
        let append = |records: &[Record]| {
            if failing.get() {
                return Err(disk_full());
            }
            stored.borrow_mut().extend(records.iter().map(|r| r.seq.0));
            Ok(())
        };
        let mut backlog = Backlog::default();
        backlog.store(&batch(1..=3), append).unwrap();
        failing.set(true);
        assert!(matches!(backlog.store(&batch(4..=5), append), Err(Some(_))));
        // Queued behind the refused batch without offering anything to the store.
        failing.set(false);
        assert!(matches!(backlog.store(&batch(6..=6), append), Err(None)));
        assert_eq!(backlog.bytes(), 30);
        assert_eq!(stored.borrow().len(), 3);
        failing.set(true);
        assert!(backlog.retry(append).is_err());
        failing.set(false);
        backlog.retry(append).unwrap();
        backlog.store(&batch(7..=8), append).unwrap();
        assert!(backlog.is_empty());
        assert_eq!(backlog.bytes(), 0);
        assert_eq!(*stored.borrow(), (1..=8).collect::<Vec<u64>>());
    }

    #[test]
    fn abandoning_reports_the_lost_range() {
        let mut backlog = Backlog::default();
        let refuse = |_: &[Record]| Err(disk_full());
        assert!(matches!(
            backlog.store(&batch(10..=12), refuse),
            Err(Some(_))
        ));
        assert_eq!(backlog.abandon(), Some((10, 12)));
        assert!(backlog.is_empty());
        assert_eq!(backlog.abandon(), None);
    }
}
