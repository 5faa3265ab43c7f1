//! LEB128 varints and zigzag: the compact integers inside a block's payload.

/// Append `v` as an unsigned LEB128 varint (1 byte below 128, at most 10).
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read an unsigned varint at `*at`, advancing it; `None` if truncated or longer than 10 bytes.
pub fn get(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7F) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Signed to unsigned so that small magnitudes of either sign stay short.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges_and_refuses_truncated_or_overlong() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put(&mut buf, v);
            let mut at = 0;
            assert_eq!(get(&buf, &mut at), Some(v));
            assert_eq!(at, buf.len());
            let mut at = 0;
            assert_eq!(get(&buf[..buf.len() - 1], &mut at), None);
        }
        let mut at = 0;
        assert_eq!(get(&[0xFF; 11], &mut at), None);
        for v in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
