//! The cursor against `serde_json` on the inputs a scanner gets wrong.

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
