//! Lowercase hex for values in text formats.

/// Appends `bytes` as lowercase hex to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
}

/// Decodes hex digits (either case) into `out`; on error, the 0-based index of the first
/// character that is not a hex digit.
pub fn decode_into(text: &str, out: &mut Vec<u8>) -> Result<(), usize> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(bytes.len());
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(2 * i)?;
        let lo = nibble(pair[1]).ok_or(2 * i + 1)?;
        out.push(hi << 4 | lo);
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let mut s = String::new();
        encode_into(&[0x00, 0xab, 0x7F], &mut s);
        assert_eq!(s, "00ab7f");
        let mut v = Vec::new();
        decode_into("00AB7f", &mut v).unwrap();
        assert_eq!(v, [0x00, 0xab, 0x7f]);
        assert_eq!(decode_into("0g", &mut Vec::new()), Err(1));
        assert_eq!(decode_into("abc", &mut Vec::new()), Err(3));
    }
}
