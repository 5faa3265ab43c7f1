//! Times as people write them, shared by the CLI's `--since`/`--until` and HTTP's `since`:
//! unix nanoseconds, a duration ago (`90s`, `10m`, `2h`, `1d`), or an RFC 3339 date-time
//! (`2026-12-02T11:00:00Z`, `2026-12-02T12:00:00.5+01:00`).

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a time: use unix nanoseconds, a duration ago (90s, 10m, 2h, 1d) or RFC 3339 (2026-12-02T11:00:00Z)")]
pub struct TimeError {
    text: String,
}

/// A time in any accepted form, as unix nanoseconds; durations count back from `now_ns`.
pub fn parse_time(text: &str, now_ns: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    let error = || TimeError {
        text: text.to_owned(),
    };
    if let Ok(ns) = text.parse::<i64>() {
        return Ok(ns);
    }
    if let Some(ago) = duration_ns(text) {
        return Ok(now_ns.saturating_sub(ago));
    }
    rfc3339(text).ok_or_else(error)
}

/// `500ms`, `90s`, `10m`, `2h`, `1d` as nanoseconds (a number and a unit, nothing else).
fn duration_ns(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let scale: i64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space or `t` may stand for the `T`).
fn rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !bytes.is_ascii() {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<i64> {
        let part = &text[from..to];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|(i, c)| bytes[*i] != *c) || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hour, minute, second) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if len == 0 {
            return None;
        }
        // Nanosecond precision; further digits are dropped.
        let kept = &fraction[..len.min(9)];
        nanos = kept.parse::<i64>().ok()? * 10i64.pow(9 - kept.len() as u32);
        rest = &fraction[len..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000_000_000;

    #[test]
    fn every_form_reads() {
        assert_eq!(parse_time("12345", NOW), Ok(12345));
        assert_eq!(parse_time("10m", NOW), Ok(NOW - 600_000_000_000));
        assert_eq!(parse_time("2h", NOW), Ok(NOW - 7_200_000_000_000));
        assert_eq!(parse_time("500ms", NOW), Ok(NOW - 500_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", NOW), Ok(0));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z", NOW),
            Ok(1_700_000_000_123_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20.123+01:00", NOW),
            Ok(1_700_000_000_123_000_000)
        );
        assert_eq!(
            parse_time("2024-02-29 00:00:00z", NOW),
            Ok(1_709_164_800_000_000_000)
        );
    }

    #[test]
    fn malformed_times_are_errors() {
        for text in [
            "",
            "10y",
            "m",
            "2023-11-14",
            "2023-13-01T00:00:00Z",
            "2023-02-30T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+1:00",
        ] {
            assert!(parse_time(text, NOW).is_err(), "{text:?}");
        }
    }
}
