//! The capture path's reading of a claude line: the cursor takes apart only the fields the
//! activity uses and passes over the rest (tool results, `tool_use_result`, partial-message
//! events) checking them but building nothing.
//!
//! It reads the lines a session is made of (`assistant`, `user`, `stream_event`). A line
//! with any field only the rare lines carry (`system`'s and `result`'s: `subtype`, `usage`,
//! `permission_denials`, ...), and any line the cursor is [`Unsure`] of, is left to the
//! serde reading; whatever this returns is what that reading returns (tested on every
//! recorded line, cut and altered, below).

use super::{Block, Json, Line, Message, Usage};
use crate::scan::{plain, Cursor, Scan, Unsure};

/// `bytes` read as serde would read them into a [`Line`], or [`Unsure`].
pub(super) fn line(bytes: &[u8]) -> Scan<Line<'_>> {
    let text = plain(bytes).ok_or(Unsure)?;
    let mut cursor = Cursor::new(text);
    let mut kind = None;
    let mut session_id = None;
    let mut message = None;
    cursor.object(|cursor, key| match key {
        "type" => {
            let value = cursor.string()?.bare().ok_or(Unsure)?;
            once(&mut kind, value)
        }
        "session_id" => {
            let value = nullable(cursor, |c| c.string()?.text())?;
            once(&mut session_id, value)
        }
        "message" => {
            let value = nullable(cursor, read_message)?;
            once(&mut message, value)
        }
        // Fields of `Line` this reading leaves to serde.
        "subtype" | "model" | "is_error" | "num_turns" | "result" | "total_cost_usd" | "usage"
        | "permission_denials" | "errors" | "tool_name" => Err(Unsure),
        _ => cursor.value().map(drop),
    })?;
    cursor.end()?;
    Ok(Line {
        kind: kind.ok_or(Unsure)?,
        subtype: None,
        session_id: session_id.flatten(),
        model: None,
        message: message.flatten(),
        tool_name: None,
        is_error: None,
        num_turns: None,
        result: None,
        total_cost_usd: None,
        usage: None,
        permission_denials: Vec::new(),
        errors: Vec::new(),
    })
}

/// Set a field seen for the first time (serde refuses a struct with a field twice).
fn once<T>(slot: &mut Option<T>, value: T) -> Scan<()> {
    if slot.is_some() {
        return Err(Unsure);
    }
    *slot = Some(value);
    Ok(())
}

/// An `Option` field: `null` is `None`.
fn nullable<'a, T>(
    cursor: &mut Cursor<'a>,
    read: impl FnOnce(&mut Cursor<'a>) -> Scan<T>,
) -> Scan<Option<T>> {
    if cursor.null()? {
        return Ok(None);
    }
    read(cursor).map(Some)
}

fn read_message<'a>(cursor: &mut Cursor<'a>) -> Scan<Message<'a>> {
    let mut id = None;
    let mut model = None;
    let mut content = None;
    let mut usage = None;
    if cursor.peek() != Some(b'{') {
        // serde also reads a struct from an array; leave that to it.
        return Err(Unsure);
    }
    cursor.object(|cursor, key| match key {
        "id" => {
            let value = nullable(cursor, |c| c.string()?.text())?;
            once(&mut id, value)
        }
        "model" => {
            let value = nullable(cursor, |c| c.string()?.text())?;
            once(&mut model, value)
        }
        "content" => {
            let value = read_blocks(cursor)?;
            once(&mut content, value)
        }
        "usage" => {
            let value = nullable(cursor, read_usage)?;
            once(&mut usage, value)
        }
        _ => cursor.value().map(drop),
    })?;
    Ok(Message {
        id: id.flatten(),
        model: model.flatten(),
        content: content.unwrap_or_default(),
        usage: usage.flatten(),
    })
}

/// A message's `content` as `super::blocks` reads it: a list of blocks, or none for a
/// string or `null`.
fn read_blocks<'a>(cursor: &mut Cursor<'a>) -> Scan<Vec<Block<'a>>> {
    match cursor.peek() {
        Some(b'n') => cursor.null().map(|_| Vec::new()),
        Some(b'"') => cursor.string()?.text().map(|_| Vec::new()),
        Some(b'[') => {
            let mut blocks = Vec::new();
            cursor.array(|cursor| {
                blocks.push(read_block(cursor)?);
                Ok(())
            })?;
            Ok(blocks)
        }
        _ => Err(Unsure),
    }
}

fn read_block<'a>(cursor: &mut Cursor<'a>) -> Scan<Block<'a>> {
    let mut kind = None;
    let mut text = None;
    let mut id = None;
    let mut name = None;
    let mut input = None;
    let mut tool_use_id = None;
    let mut is_error = None;
    let mut content = None;
    if cursor.peek() != Some(b'{') {
        return Err(Unsure);
    }
    let string = |cursor: &mut Cursor<'a>| nullable(cursor, |c| c.string()?.text());
    let raw = |cursor: &mut Cursor<'a>| nullable(cursor, |c| c.value().map(Json));
    cursor.object(|cursor, key| match key {
        "type" => {
            let value = cursor.string()?.bare().ok_or(Unsure)?;
            once(&mut kind, value)
        }
        "text" => once(&mut text, string(cursor)?),
        "id" => once(&mut id, string(cursor)?),
        "name" => once(&mut name, string(cursor)?),
        "tool_use_id" => once(&mut tool_use_id, string(cursor)?),
        "input" => once(&mut input, raw(cursor)?),
        "content" => once(&mut content, raw(cursor)?),
        "is_error" => {
            let value = nullable(cursor, Cursor::bool)?;
            once(&mut is_error, value)
        }
        _ => cursor.value().map(drop),
    })?;
    Ok(Block {
        kind: kind.ok_or(Unsure)?,
        text: text.flatten(),
        id: id.flatten(),
        name: name.flatten(),
        input: input.flatten(),
        tool_use_id: tool_use_id.flatten(),
        is_error: is_error.flatten(),
        content: content.flatten(),
    })
}

fn read_usage(cursor: &mut Cursor<'_>) -> Scan<Usage> {
    let mut usage = Usage::default();
    let mut seen = [false; 4];
    if cursor.peek() != Some(b'{') {
        return Err(Unsure);
    }
    cursor.object(|cursor, key| {
        let (slot, field) = match key {
            "input_tokens" => (0, &mut usage.input_tokens),
            "output_tokens" => (1, &mut usage.output_tokens),
            "cache_read_input_tokens" => (2, &mut usage.cache_read_input_tokens),
            "cache_creation_input_tokens" => (3, &mut usage.cache_creation_input_tokens),
            _ => return cursor.value().map(drop),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(Unsure);
        }
        *field = cursor.u64()?;
        Ok(())
    })?;
    Ok(usage)
}

#[cfg(test)]
mod tests;
