//! CURVE keys as text: z85, 40 characters for 32 bytes.

/// Characters of a z85-encoded CURVE key.
pub const Z85_LEN: usize = 40;

/// The z85 alphabet (ZeroMQ RFC 32).
const ALPHABET: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Why a z85 key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 40 characters.
    #[error("a CURVE key is {Z85_LEN} z85 characters, this one has {0}")]
    Length(usize),
    /// A character outside the z85 alphabet.
    #[error("a CURVE key is z85 text, and this one has characters outside that alphabet")]
    Alphabet,
}

/// Decode a z85 key (40 characters) into its 32 bytes.
pub fn decode(z85: &str) -> Result<[u8; 32], KeyError> {
    let count = z85.chars().count();
    if count != Z85_LEN {
        return Err(KeyError::Length(count));
    }
    if !z85.chars().all(|c| ALPHABET.contains(c)) {
        return Err(KeyError::Alphabet);
    }
    let bytes = zmq::z85_decode(z85).map_err(|_| KeyError::Alphabet)?;
    bytes.try_into().map_err(|_| KeyError::Alphabet)
}

/// Encode 32 key bytes as z85.
pub fn encode(key: &[u8; 32]) -> String {
    // 32 bytes is a multiple of 4, the only condition z85 sets.
    zmq::z85_encode(key).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_named() {
        let pair = zmq::CurveKeyPair::new().unwrap();
        let text = encode(&pair.public_key);
        assert_eq!(text.len(), Z85_LEN);
        assert_eq!(decode(&text).unwrap(), pair.public_key);
        assert_eq!(decode(&text[..39]), Err(KeyError::Length(39)));
        assert_eq!(decode(&format!("{text}A")), Err(KeyError::Length(41)));
        let bad = format!("{}\"", &text[..39]);
        assert_eq!(decode(&bad), Err(KeyError::Alphabet));
    }
}
