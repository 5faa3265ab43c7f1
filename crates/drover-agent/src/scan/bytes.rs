//! The loops under the cursor: each takes the line's bytes and a position and returns where
//! something ends, with locals only (a position kept in a register, not in a struct), so the
//! walk over a value it only checks is one loop whatever its nesting.

/// Where the first `"` or `\` at or after `at` is. Most strings in a line are short (keys,
/// ids), so the bytes are looked at eight at a time in line rather than through a call to
/// `memchr`; a long one (a tool's output) goes to `memchr` once its first bytes are passed.
#[inline(always)]
pub(super) fn quote_or_backslash(bytes: &[u8], mut at: usize) -> Option<usize> {
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
pub(super) fn string_end(bytes: &[u8], mut at: usize) -> Option<(usize, bool)> {
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
pub(super) fn next(bytes: &[u8], mut at: usize) -> Option<(u8, usize)> {
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
pub(super) fn skip(bytes: &[u8], mut at: usize, room: u32) -> Option<usize> {
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
pub(super) fn literal_end(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    bytes[at..].starts_with(word).then_some(at + word.len())
}
