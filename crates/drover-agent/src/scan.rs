//! A JSON cursor for the capture path: it walks one line, validating every byte it passes,
//! and hands out borrowed slices, so a parser takes apart only the fields its activity needs.
//!
//! It is deliberately stricter than `serde_json`: anything it does not take apart cheaply
//! (raw control bytes, whitespace other than spaces, escaped keys, deep nesting, anything
//! malformed) is [`Unsure`], and the caller reads the line with `serde_json` instead. So a
//! line the cursor accepts is one `serde_json` accepts too, and a line it refuses is judged
//! by `serde_json` exactly as before: the fast path never decides what is garbage.
//!
//! The walk is a few tight loops over bytes (strings eight bytes at a time, a value it only
//! passes over in one loop whatever its nesting) rather than a call per token: on the
//! capture path a line's cost is its token count.

use std::borrow::Cow;

use bytes::{literal_end, next, quote_or_backslash, skip, string_end};

mod bytes;

/// The cursor met something it does not take apart: let `serde_json` read the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsure;

pub(crate) type Scan<T> = Result<T, Unsure>;

/// Nesting the cursor follows (`serde_json` allows 128): deeper lines go to `serde_json`.
/// At most 64: [`skip`] keeps one bit per open container.
const MAX_DEPTH: u32 = 64;

/// `line` as text the cursor can walk: valid UTF-8 without control bytes (which JSON allows
/// only escaped, or as whitespace the cursor leaves to `serde_json`).
#[inline]
pub(crate) fn plain(line: &[u8]) -> Option<&str> {
    // One pass that vectorises: printable ASCII is `0x20..=0x7f`.
    let mut odd = false;
    for chunk in line.chunks(64) {
        odd |= chunk
            .iter()
            .fold(false, |odd, &b| odd | (b.wrapping_sub(0x20) >= 0x60));
    }
    if odd && line.iter().any(|&b| b < 0x20) {
        return None;
    }
    std::str::from_utf8(line).ok()
}

/// A string as it stands in the line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Str<'a> {
    /// With its quotes.
    quoted: &'a str,
    /// It holds a backslash escape.
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The bytes between the quotes, if there is no escape in them (what a borrowed `&str`
    /// field of a serde struct accepts).
    #[inline]
    pub(crate) fn bare(self) -> Option<&'a str> {
        (!self.escaped).then(|| &self.quoted[1..self.quoted.len() - 1])
    }

    /// The string's value. An escaped one is decoded by `serde_json` itself, so surrogate
    /// pairs and lone surrogates are judged as they always were.
    #[inline]
    pub(crate) fn text(self) -> Scan<Cow<'a, str>> {
        match self.bare() {
            Some(bare) => Ok(Cow::Borrowed(bare)),
            None => serde_json::from_str::<String>(self.quoted)
                .map(Cow::Owned)
                .map_err(|_| Unsure),
        }
    }
}

/// A walk over one line of JSON text.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            pos: 0,
            depth: 0,
        }
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not a space, not consumed.
    #[inline(always)]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        let (b, at) = next(self.bytes(), self.pos)?;
        self.pos = at;
        Some(b)
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Nothing but spaces is left.
    pub(crate) fn end(&mut self) -> Scan<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Unsure),
        }
    }

    /// Consume `null` if it comes next.
    #[inline]
    pub(crate) fn null(&mut self) -> Scan<bool> {
        if self.peek() == Some(b'n') {
            self.pos = literal_end(self.bytes(), self.pos, b"null").ok_or(Unsure)?;
            return Ok(true);
        }
        Ok(false)
    }

    #[inline]
    pub(crate) fn string(&mut self) -> Scan<Str<'a>> {
        self.eat(b'"')?;
        let start = self.pos - 1;
        let (end, escaped) = string_end(self.bytes(), self.pos).ok_or(Unsure)?;
        self.pos = end;
        Ok(Str {
            quoted: &self.text[start..end],
            escaped,
        })
    }

    #[inline]
    pub(crate) fn bool(&mut self) -> Scan<bool> {
        let (value, word): (bool, &[u8]) = match self.peek() {
            Some(b't') => (true, b"true"),
            Some(b'f') => (false, b"false"),
            _ => return Err(Unsure),
        };
        self.pos = literal_end(self.bytes(), self.pos, word).ok_or(Unsure)?;
        Ok(value)
    }

    /// A non-negative integer written plainly (no sign, fraction or exponent) that fits.
    #[inline]
    pub(crate) fn u64(&mut self) -> Scan<u64> {
        self.peek();
        let bytes = self.bytes();
        let start = self.pos;
        let mut at = start;
        let mut n: u64 = 0;
        while let Some(digit) = bytes
            .get(at)
            .and_then(|b| b.checked_sub(b'0'))
            .filter(|d| *d < 10)
        {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or(Unsure)?;
            at += 1;
        }
        let count = at - start;
        let leading_zero = count > 1 && bytes[start] == b'0';
        if count == 0 || leading_zero || matches!(bytes.get(at), Some(b'.' | b'e' | b'E')) {
            return Err(Unsure);
        }
        self.pos = at;
        Ok(n)
    }

    /// Pass over any value, checking it; its text (what a `&RawValue` would hold).
    #[inline]
    pub(crate) fn value(&mut self) -> Scan<&'a str> {
        self.peek();
        let start = self.pos;
        self.pos = skip(self.bytes(), start, MAX_DEPTH - self.depth).ok_or(Unsure)?;
        Ok(&self.text[start..self.pos])
    }

    #[inline(always)]
    fn nest(&mut self, open: u8) -> Scan<()> {
        self.eat(open)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsure);
        }
        Ok(())
    }

    /// An object's key and its colon; an escaped key is left to serde (which unescapes it
    /// before matching it to a field).
    #[inline(always)]
    fn key(&mut self) -> Scan<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let bytes = self.bytes();
        let end = quote_or_backslash(bytes, start).ok_or(Unsure)?;
        if bytes[end] != b'"' {
            return Err(Unsure);
        }
        self.pos = end + 1;
        if bytes.get(self.pos) == Some(&b':') {
            self.pos += 1;
        } else {
            self.eat(b':')?;
        }
        Ok(&self.text[start..end])
    }

    /// Walk an object: `each` is given every key (unescaped keys only) and must consume its
    /// value.
    #[inline]
    pub(crate) fn object(
        &mut self,
        mut each: impl FnMut(&mut Cursor<'a>, &'a str) -> Scan<()>,
    ) -> Scan<()> {
        self.nest(b'{')?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            each(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// Walk an array: `each` must consume every element.
    #[inline]
    pub(crate) fn array(&mut self, mut each: impl FnMut(&mut Cursor<'a>) -> Scan<()>) -> Scan<()> {
        self.nest(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.peek();
            each(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }
}

#[cfg(test)]
mod tests;
