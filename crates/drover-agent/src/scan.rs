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

/// Where the first `"` or `\` at or after `at` is. Most strings in a line are short (keys,
/// ids), so the bytes are looked at eight at a time in line rather than through a call to
/// `memchr`; a long one (a tool's output) goes to `memchr` once its first bytes are passed.
#[inline(always)]
fn quote_or_backslash(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let stop = at + 64;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where the byte was zero; a false hit can only follow a
        // true one, so the lowest is exact.
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
        if at >= stop {
            let rest = bytes.get(at..)?;
            return memchr::memchr2(b'"', b'\\', rest).map(|i| at + i);
        }
    }
    let rest = bytes.get(at..)?;
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| at + i)
}

/// The end (past the closing quote) of the string whose opening quote is just before `at`,
/// and whether it holds an escape. Escapes are checked as `serde_json` checks a string it
/// passes over.
#[inline(always)]
fn string_end(bytes: &[u8], mut at: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        at = quote_or_backslash(bytes, at)?;
        if bytes[at] == b'"' {
            return Some((at + 1, escaped));
        }
        escaped = true;
        match bytes.get(at + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
            b'u' => {
                let hex = bytes.get(at + 2..at + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                at += 6;
            }
            _ => return None,
        }
    }
}

/// The next byte at or after `at` that is not a space, and where it is.
#[inline(always)]
fn next(bytes: &[u8], mut at: usize) -> Option<(u8, usize)> {
    loop {
        let b = *bytes.get(at)?;
        if b != b' ' {
            return Some((b, at));
        }
        at += 1;
    }
}

/// Digits from `at`: how many.
#[inline(always)]
fn digits(bytes: &[u8], at: usize) -> usize {
    bytes.get(at..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    })
}

/// The end of the number starting at `at`, as `serde_json` reads one:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[inline]
fn number_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    let int = digits(bytes, at);
    if int == 0 || (int > 1 && bytes[at] == b'0') {
        return None;
    }
    at += int;
    if bytes.get(at) == Some(&b'.') {
        let frac = digits(bytes, at + 1);
        if frac == 0 {
            return None;
        }
        at += 1 + frac;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exp = digits(bytes, at);
        if exp == 0 {
            return None;
        }
        at += exp;
    }
    Some(at)
}

/// Past a key (escaped or not: a value passed over has its keys ignored) and its colon, from
/// `at` where the key's quote is due.
#[inline(always)]
fn key_end(bytes: &[u8], at: usize) -> Option<usize> {
    let (b, at) = next(bytes, at)?;
    if b != b'"' {
        return None;
    }
    let (end, _) = string_end(bytes, at + 1)?;
    let (b, at) = next(bytes, end)?;
    (b == b':').then_some(at + 1)
}

/// The end of the value starting at or after `at` (after spaces), checking all of it, in one
/// loop whatever its nesting. `room`: how many containers may still open.
fn skip(bytes: &[u8], mut at: usize, room: u32) -> Option<usize> {
    // One bit per open container, set for an object.
    let mut open: u64 = 0;
    let mut depth = 0;
    loop {
        // A value is due.
        let (b, start) = next(bytes, at)?;
        at = start;
        match b {
            b'"' => at = string_end(bytes, at + 1)?.0,
            b'{' | b'[' => {
                depth += 1;
                if depth > room {
                    return None;
                }
                let object = b == b'{';
                open = open << 1 | u64::from(object);
                let (b, inner) = next(bytes, at + 1)?;
                if b == if object { b'}' } else { b']' } {
                    at = inner + 1;
                    depth -= 1;
                    open >>= 1;
                } else {
                    at = if object {
                        key_end(bytes, inner)?
                    } else {
                        inner
                    };
                    continue;
                }
            }
            b't' => at = literal_end(bytes, at, b"true")?,
            b'f' => at = literal_end(bytes, at, b"false")?,
            b'n' => at = literal_end(bytes, at, b"null")?,
            b'-' | b'0'..=b'9' => at = number_end(bytes, at)?,
            _ => return None,
        }
        // A value ended: close what it ends, up to the next value due.
        loop {
            if depth == 0 {
                return Some(at);
            }
            let object = open & 1 == 1;
            let (b, after) = next(bytes, at)?;
            match b {
                b',' => {
                    at = if object {
                        key_end(bytes, after + 1)?
                    } else {
                        after + 1
                    };
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            at = after + 1;
            depth -= 1;
            open >>= 1;
        }
    }
}

#[inline(always)]
fn literal_end(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    bytes[at..].starts_with(word).then_some(at + word.len())
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
mod tests {
    use super::*;

    fn skip(text: &str) -> Scan<&str> {
        let mut cursor = Cursor::new(text);
        let value = cursor.value()?;
        cursor.end()?;
        Ok(value)
    }

    #[test]
    fn the_cursor_accepts_only_what_serde_json_accepts() {
        for text in [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"y\\z\u00e9"],"b":{}}"#,
            r#" [ ] "#,
            r#""\ud800""#,
            "-0",
        ] {
            assert_eq!(skip(text), Ok(text.trim()), "{text}");
            serde_json::from_str::<serde::de::IgnoredAny>(text).expect(text);
        }
        for text in [
            "01",
            "1.",
            "1e",
            "-",
            ".5",
            "+1",
            "tru",
            "nul",
            r#""\x""#,
            r#""\u12g4""#,
            r#""abc"#,
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{1:2}",
            "[1 2]",
            "{} x",
        ] {
            assert_eq!(skip(text), Err(Unsure), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(skip(&deep), Err(Unsure));
    }

    #[test]
    fn the_first_quote_or_backslash_is_found_wherever_it_is() {
        for len in 0..200 {
            for at in 0..=len {
                for (mark, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    let mut bytes = vec![0xa2_u8; len];
                    if at < len {
                        bytes[at] = mark;
                        // A second one after the first must not be found instead.
                        if at + 1 < len {
                            bytes[at + 1] = other;
                        }
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(quote_or_backslash(&bytes, 0), want, "{len} {at}");
                }
            }
        }
    }

    #[test]
    fn plain_text_is_utf8_without_control_bytes() {
        assert_eq!(plain(b"{\"a\":\"\xc3\xa9\"}"), Some("{\"a\":\"é\"}"));
        assert_eq!(plain(b"{\"a\":\"\xff\"}"), None);
        assert_eq!(plain(b"{\"a\":\t1}"), None);
        assert_eq!(plain("é\u{1}".as_bytes()), None);
        for len in 0..80 {
            for at in 0..len {
                for byte in [0x00, 0x01, 0x1f, b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    assert_eq!(plain(&bytes), None, "{len} {at} {byte}");
                    bytes[at] = 0x20;
                    assert!(plain(&bytes).is_some());
                }
            }
        }
    }

    #[test]
    fn integers_that_do_not_fit_or_are_not_plain_are_unsure() {
        for (text, want) in [
            ("0", Ok(0)),
            ("18446744073709551615", Ok(u64::MAX)),
            ("18446744073709551616", Err(Unsure)),
            ("1.0", Err(Unsure)),
            ("1e3", Err(Unsure)),
            ("-1", Err(Unsure)),
            ("00", Err(Unsure)),
        ] {
            assert_eq!(Cursor::new(text).u64(), want, "{text}");
        }
    }
}
