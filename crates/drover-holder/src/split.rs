//! Splitting a byte stream into records: the same rule in the holder and the in-process
//! supervisor.

/// Cuts bytes into records: at each `\n` (kept in the record), and at `max` bytes for a longer
/// line (those pieces are `partial`). Holds at most `max - 1` bytes of an unfinished line.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// True if an unfinished line is buffered.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Splits `data`, calling `emit(bytes, partial)` for each finished record.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Vec<u8>, bool)) {
        while !data.is_empty() {
            let room = self.max - self.pending.len();
            let window = &data[..room.min(data.len())];
            if let Some(i) = find_newline(window) {
                emit(self.take_with(&data[..=i]), false);
                data = &data[i + 1..];
            } else if window.len() == room {
                emit(self.take_with(window), true);
                data = &data[room..];
            } else {
                self.pending.extend_from_slice(window);
                data = &[];
            }
        }
    }

    /// The buffered unfinished line, if any (flushed as `partial`).
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.has_pending()
            .then(|| std::mem::take(&mut self.pending))
    }

    fn take_with(&mut self, tail: &[u8]) -> Vec<u8> {
        if self.pending.is_empty() {
            tail.to_vec()
        } else {
            let mut out = std::mem::take(&mut self.pending);
            out.extend_from_slice(tail);
            out
        }
    }
}

fn find_newline(hay: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', hay)
}

/// When the buffered unfinished line started, after a read: its bytes arrived now if the read
/// finished a record (what was pending before went out with it), else it is the same line as
/// before and keeps its start. A line completed in between never lends its start to the next.
pub fn idle_since<I: Copy>(before: Option<I>, emitted: bool, pending: bool, now: I) -> Option<I> {
    match (pending, before) {
        (false, _) => None,
        (true, Some(t)) if !emitted => Some(t),
        (true, _) => Some(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    type Pieces = Vec<(Vec<u8>, bool)>;

    fn split(max: usize, chunks: &[&[u8]]) -> (Pieces, Option<Vec<u8>>) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |d, p| out.push((d, p)));
        }
        (out, s.flush())
    }

    #[test]
    fn splits_lines_keeping_newlines() {
        let (out, rest) = split(64, &[b"a\nbb\n", b"c", b"c\nd"]);
        let want: Pieces = vec![
            (b"a\n".to_vec(), false),
            (b"bb\n".to_vec(), false),
            (b"cc\n".to_vec(), false),
        ];
        assert_eq!(out, want);
        assert_eq!(rest, Some(b"d".to_vec()));
    }

    #[test]
    fn long_lines_are_cut_at_max() {
        let (out, rest) = split(4, &[b"abcdefghij\n", b"wxyz\n"]);
        let got: Vec<(&[u8], bool)> = out.iter().map(|(d, p)| (d.as_slice(), *p)).collect();
        assert_eq!(
            got,
            vec![
                (&b"abcd"[..], true),
                (&b"efgh"[..], true),
                (&b"ij\n"[..], false),
                (&b"wxyz"[..], true),
                (&b"\n"[..], false),
            ]
        );
        assert_eq!(rest, None);
    }

    #[test]
    fn pending_plus_chunk_respects_max() {
        let (out, rest) = split(4, &[b"ab", b"cdef", b"\n"]);
        let got: Vec<(&[u8], bool)> = out.iter().map(|(d, p)| (d.as_slice(), *p)).collect();
        assert_eq!(got, vec![(&b"abcd"[..], true), (&b"ef\n"[..], false)]);
        assert_eq!(rest, None);
    }

    #[test]
    fn idle_timer_starts_with_the_unfinished_line() {
        let earlier = Instant::now() - Duration::from_secs(1);
        // The read finished the old line and began a new one: the new one starts now.
        let restarted = idle_since(Some(earlier), true, true, Instant::now()).expect("pending");
        assert!(restarted > earlier);
        // The read only extended the same unfinished line: it keeps its start.
        assert_eq!(
            idle_since(Some(earlier), false, true, Instant::now()),
            Some(earlier)
        );
        assert_eq!(idle_since(Some(earlier), true, false, Instant::now()), None);
        assert!(idle_since(None, false, true, Instant::now()).is_some());
    }

    #[test]
    fn bytes_are_kept_exact() {
        let (out, _) = split(64, &[b"a\xffb\n\x00\n"]);
        assert_eq!(out[0].0, b"a\xffb\n");
        assert_eq!(out[1].0, b"\x00\n");
    }
}
