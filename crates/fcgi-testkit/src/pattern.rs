//! The deterministic test pattern and SHA-256 helpers.
//!
//! Byte `i` of the pattern is `(i * 31 + 7) % 251`; the pattern repeats every
//! 251 bytes. `output.php` and `big_then_read.php` write exactly these bytes.

use sha2::{Digest, Sha256};

/// Period of the pattern in bytes.
pub const PERIOD: usize = 251;

/// Byte number `index` of the pattern: `(index * 31 + 7) % 251`.
pub fn pattern_byte(index: usize) -> u8 {
    // (index % 251) keeps the product small; the value is < 251 so fits a u8.
    (((index % PERIOD) * 31 + 7) % PERIOD) as u8
}

/// The first `len` bytes of the pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    pattern_at(0, len)
}

/// `len` bytes of the pattern starting at byte `offset`.
pub fn pattern_at(offset: usize, len: usize) -> Vec<u8> {
    let cycle: Vec<u8> = (0..PERIOD).map(pattern_byte).collect();
    let mut out = Vec::with_capacity(len);
    let mut pos = offset % PERIOD;
    while out.len() < len {
        let take = (PERIOD - pos).min(len - out.len());
        out.extend_from_slice(&cycle[pos..pos + take]);
        pos = 0;
    }
    out
}

/// Lower-case hex SHA-256 of the first `len` pattern bytes, computed in chunks
/// (no `len`-sized allocation).
pub fn pattern_sha256(len: usize) -> String {
    let block = pattern(PERIOD * 261); // 65511 bytes, a whole number of periods
    let mut hasher = Sha256::new();
    let mut left = len;
    while left > 0 {
        let take = left.min(block.len());
        hasher.update(&block[..take]);
        left -= take;
    }
    hex(&hasher.finalize())
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex encoding of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_formula() {
        let p = pattern(1000);
        for (i, b) in p.iter().enumerate() {
            assert_eq!(usize::from(*b), (i * 31 + 7) % 251);
        }
        assert_eq!(pattern_at(300, 10), p[300..310].to_vec());
    }

    #[test]
    fn chunked_sha_matches() {
        for len in [0, 1, 251, 65511, 65512, 200_000] {
            assert_eq!(pattern_sha256(len), sha256_hex(&pattern(len)), "len {len}");
        }
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
