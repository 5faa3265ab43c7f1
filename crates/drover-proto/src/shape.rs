//! Checking the shape of a MessagePack frame before anything is decoded from it.
//!
//! A request is refused from its first byte unless it is a map, and then walked once, without
//! allocating, to check that every header fits in the bytes that follow it (a container claiming
//! more values than bytes remain is refused at once), that nesting stays within
//! [`MAX_NESTING`] levels and that the frame holds at most [`MAX_ELEMENTS`] values in all. Only
//! then is any part of it decoded, so the memory a request can cost is bounded by its size and
//! these two limits, never by the lengths its headers claim.

#[cfg(doc)]
use crate::limits::MAX_ELEMENTS;
use crate::limits::MAX_NESTING;

/// What one MessagePack header introduces.
enum Body {
    /// `n` bytes of payload (0 for nil, booleans and fixints).
    Bytes(usize),
    /// `n` values (an array's elements, or a map's keys and values).
    Values(usize),
}

/// True if the first byte is a map marker (fixmap, map16 or map32).
pub(crate) fn starts_with_map(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

/// Walks the single value at the start of `frame`, checking its shape; returns where it ends
/// and how many values it holds (the caller compares that with [`MAX_ELEMENTS`], so that a
/// well-formed request over the budget still has its id echoed).
pub(crate) fn check(frame: &[u8]) -> Result<Shape, String> {
    walk(frame, 0)
}

/// The end and value count of the value starting at `pos` in a frame [`check`] accepted.
pub(crate) fn value_at(frame: &[u8], pos: usize) -> Result<Shape, String> {
    walk(frame, pos)
}

/// Where a value ends, and the values nested in it (array elements, map keys and values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) end: usize,
    pub(crate) values: usize,
}

/// Walks one value from `pos` with an explicit stack (no recursion, no allocation beyond the
/// stack of at most `MAX_NESTING` counters). Every claimed count is checked against the bytes
/// left before it is used, so the walk is linear in the frame's size whatever the headers say.
fn walk(frame: &[u8], mut pos: usize) -> Result<Shape, String> {
    // Values still to read in each open container, innermost last.
    let mut open: Vec<usize> = Vec::with_capacity(MAX_NESTING);
    let mut values = 0usize;
    loop {
        let (header, body) = header(frame, pos)?;
        pos += header;
        if let Some(left) = open.last_mut() {
            *left -= 1;
        }
        let remaining = frame.len() - pos;
        match body {
            Body::Bytes(n) => {
                if n > remaining {
                    return Err(format!(
                        "a value at byte {pos} claims {n} bytes, only {remaining} remain"
                    ));
                }
                pos += n;
            }
            Body::Values(n) => {
                if open.len() >= MAX_NESTING {
                    return Err(format!("nested deeper than {MAX_NESTING} levels"));
                }
                // Every value takes at least one byte.
                if n > remaining {
                    return Err(format!(
                        "a container at byte {pos} claims {n} values, only {remaining} bytes remain"
                    ));
                }
                values += n;
                open.push(n);
            }
        }
        while open.last() == Some(&0) {
            open.pop();
        }
        if open.is_empty() {
            return Ok(Shape { end: pos, values });
        }
    }
}

/// Reads the header at `pos`: its length in bytes and what follows it.
fn header(frame: &[u8], pos: usize) -> Result<(usize, Body), String> {
    let Some(&marker) = frame.get(pos) else {
        return Err(format!("the message ends at byte {pos} inside a value"));
    };
    // A length of `width` bytes after the marker, big-endian.
    let length = |width: usize| -> Result<usize, String> {
        let bytes = frame
            .get(pos + 1..pos + 1 + width)
            .ok_or_else(|| format!("the message ends inside the header at byte {pos}"))?;
        let n = bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        usize::try_from(n).map_err(|_| format!("a length of {n} at byte {pos}"))
    };
    let sized = |width: usize| -> Result<(usize, Body), String> {
        Ok((1 + width, Body::Bytes(length(width)?)))
    };
    let values = |width: usize, per_entry: usize| -> Result<(usize, Body), String> {
        let n = length(width)?;
        let n = n
            .checked_mul(per_entry)
            .ok_or_else(|| format!("a container of {n} entries at byte {pos}"))?;
        Ok((1 + width, Body::Values(n)))
    };
    Ok(match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, Body::Bytes(0)),
        0x80..=0x8f => (1, Body::Values(2 * usize::from(marker & 0x0f))),
        0x90..=0x9f => (1, Body::Values(usize::from(marker & 0x0f))),
        0xa0..=0xbf => (1, Body::Bytes(usize::from(marker & 0x1f))),
        0xc1 => return Err(format!("the reserved byte 0xc1 at byte {pos}")),
        0xc4 | 0xd9 => sized(1)?,
        0xc5 | 0xda => sized(2)?,
        0xc6 | 0xdb => sized(4)?,
        // ext 8/16/32: a length, then a type byte, then the payload.
        0xc7 => (2, Body::Bytes(length(1)? + 1)),
        0xc8 => (3, Body::Bytes(length(2)? + 1)),
        0xc9 => (5, Body::Bytes(length(4)? + 1)),
        0xca => (1, Body::Bytes(4)),
        0xcb => (1, Body::Bytes(8)),
        0xcc | 0xd0 => (1, Body::Bytes(1)),
        0xcd | 0xd1 => (1, Body::Bytes(2)),
        0xce | 0xd2 => (1, Body::Bytes(4)),
        0xcf | 0xd3 => (1, Body::Bytes(8)),
        // fixext 1/2/4/8/16: a type byte and the payload.
        0xd4 => (1, Body::Bytes(2)),
        0xd5 => (1, Body::Bytes(3)),
        0xd6 => (1, Body::Bytes(5)),
        0xd7 => (1, Body::Bytes(9)),
        0xd8 => (1, Body::Bytes(17)),
        0xdc => values(2, 1)?,
        0xdd => values(4, 1)?,
        0xde => values(2, 2)?,
        0xdf => values(4, 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_ELEMENTS;

    fn encoded(value: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).expect("encode");
        out
    }

    #[test]
    fn walks_every_kind_of_value_to_its_end() {
        let value = rmpv::Value::Map(vec![
            ("a".into(), rmpv::Value::Array(vec![1.into(), (-40).into()])),
            ("b".into(), rmpv::Value::Binary(vec![0; 300])),
            ("c".into(), rmpv::Value::Ext(5, vec![1, 2, 3])),
            ("d".into(), rmpv::Value::Ext(5, vec![1, 2, 3, 4])),
            ("e".into(), rmpv::Value::F64(1.5)),
            ("f".into(), rmpv::Value::F32(1.5)),
            ("g".into(), u64::MAX.into()),
            ("h".into(), "x".repeat(70_000).into()),
            ("i".into(), rmpv::Value::Array(vec![rmpv::Value::Nil; 20])),
            ("j".into(), rmpv::Value::Map(vec![])),
        ]);
        let bytes = encoded(&value);
        assert_eq!(check(&bytes).map(|s| s.end), Ok(bytes.len()));
        let mut cursor = &bytes[..];
        rmpv::decode::read_value(&mut cursor).expect("rmpv agrees it is one value");
    }

    #[test]
    fn claims_beyond_the_frame_are_refused_from_the_header() {
        // array32 of 2^32-1 nils, with four bytes after the header.
        let bytes = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0];
        assert!(check(&bytes).expect_err("refused").contains("claims"));
        assert!(
            check(&[0x81, 0xc0]).is_err(),
            "a map entry without its value"
        );
    }

    #[test]
    fn values_are_counted_at_every_depth() {
        let value = rmpv::Value::Map(vec![(
            "a".into(),
            rmpv::Value::Array(vec![rmpv::Value::Array(vec![1.into(), 2.into()]), 3.into()]),
        )]);
        let bytes = encoded(&value);
        let shape = check(&bytes).expect("well formed");
        assert_eq!(
            shape,
            Shape {
                end: bytes.len(),
                values: 6
            }
        );
        assert_eq!(MAX_ELEMENTS, 65_536);
    }
}
