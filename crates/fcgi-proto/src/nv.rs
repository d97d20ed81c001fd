//! Name-value pairs, the encoding of PARAMS and GET_VALUES content.
//!
//! Each length is one byte when it is at most 127, otherwise four bytes,
//! big-endian, with the top bit of the first byte set. The decoder checks every
//! length against the bytes actually present before slicing, so a truncated or
//! lying length is an error and never an allocation of the claimed size.
//!
//! ```
//! use fcgi_proto::nv::{encode_pair, PairIter};
//! let mut buf = Vec::new();
//! encode_pair(b"SCRIPT_FILENAME", b"/srv/index.php", &mut buf);
//! encode_pair(b"EMPTY", b"", &mut buf);
//! let pairs: Vec<_> = PairIter::new(&buf).collect::<Result<_, _>>().unwrap();
//! assert_eq!(pairs, vec![(&b"SCRIPT_FILENAME"[..], &b"/srv/index.php"[..]), (&b"EMPTY"[..], &b""[..])]);
//! ```

/// Largest length that fits the one-byte form.
pub const MAX_SHORT_LEN: usize = 127;
/// Largest length the four-byte form can express (31 bits).
pub const MAX_LEN: usize = 0x7fff_ffff;

/// A malformed name-value pair stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvError {
    /// The stream ended inside a length field.
    #[error("name-value pair truncated inside a length field at byte {offset}")]
    TruncatedLength {
        /// Offset of the length field in the stream.
        offset: usize,
    },
    /// A length claims more bytes than remain.
    #[error("name-value pair at byte {offset} claims {claimed} bytes but only {available} remain")]
    LengthExceedsData {
        /// Offset of the pair in the stream.
        offset: usize,
        /// Name length plus value length as claimed.
        claimed: u64,
        /// Bytes actually left after the length fields.
        available: usize,
    },
}

/// Why a parameter name cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("parameter name is empty")]
    Empty,
    /// The name contains `=` or a NUL byte, which no CGI environment can hold.
    #[error("parameter name {name:?} contains {what}")]
    Forbidden {
        /// The name, lossily decoded.
        name: String,
        /// What was found: `'='` or `NUL`.
        what: &'static str,
    },
    /// The name is longer than a length field can express.
    #[error("parameter name is {len} bytes, more than the {MAX_LEN} FastCGI allows")]
    TooLong {
        /// Length of the name.
        len: usize,
    },
}

/// Checks that a parameter name can be sent: non-empty, no `=`, no NUL.
/// Values may hold any bytes.
///
/// ```
/// use fcgi_proto::nv::check_name;
/// assert!(check_name(b"HTTP_HOST").is_ok());
/// assert!(check_name(b"").is_err());
/// assert!(check_name(b"A=B").is_err());
/// ```
pub fn check_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    // One pass over the (short) name; the error path looks again to say
    // which byte it was.
    if !name.iter().any(|&b| b == b'=' || b == 0) {
        return Ok(());
    }
    let what = if name.contains(&b'=') {
        "'='"
    } else {
        "a NUL byte"
    };
    Err(NameError::Forbidden {
        name: String::from_utf8_lossy(name).into_owned(),
        what,
    })
}

/// Bytes a length field takes for a given length.
pub fn length_field_len(len: usize) -> usize {
    if len <= MAX_SHORT_LEN {
        1
    } else {
        4
    }
}

/// Encoded size of one pair: both length fields, the name and the value.
pub fn encoded_len(name: &[u8], value: &[u8]) -> usize {
    length_field_len(name.len()) + length_field_len(value.len()) + name.len() + value.len()
}

/// Appends one length field. Lengths above [`MAX_LEN`] are the caller's
/// error; [`encode_pair`] callers in this crate check them first.
pub fn encode_length(len: usize, out: &mut Vec<u8>) {
    if len <= MAX_SHORT_LEN {
        out.push(len as u8);
    } else {
        let len = (len.min(MAX_LEN) as u32) | 0x8000_0000;
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends one encoded pair.
pub fn encode_pair(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(name, value));
    encode_length(name.len(), out);
    encode_length(value.len(), out);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Iterates over the pairs of a complete name-value stream, borrowing from it.
/// After the first error it yields nothing more.
#[derive(Debug, Clone)]
pub struct PairIter<'a> {
    data: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> PairIter<'a> {
    /// Iterates over `data`, which must hold whole pairs.
    pub fn new(data: &'a [u8]) -> PairIter<'a> {
        PairIter {
            data,
            offset: 0,
            failed: false,
        }
    }

    fn read_length(&mut self) -> Result<usize, NvError> {
        let start = self.offset;
        let first = *self
            .data
            .get(start)
            .ok_or(NvError::TruncatedLength { offset: start })?;
        if first & 0x80 == 0 {
            self.offset += 1;
            return Ok(first as usize);
        }
        let bytes = self
            .data
            .get(start..start + 4)
            .ok_or(NvError::TruncatedLength { offset: start })?;
        self.offset += 4;
        let len = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]);
        Ok(len as usize)
    }

    fn next_pair(&mut self) -> Result<(&'a [u8], &'a [u8]), NvError> {
        let pair_start = self.offset;
        let name_len = self.read_length()?;
        let value_len = self.read_length()?;
        let available = self.data.len() - self.offset;
        let claimed = name_len as u64 + value_len as u64;
        if claimed > available as u64 {
            return Err(NvError::LengthExceedsData {
                offset: pair_start,
                claimed,
                available,
            });
        }
        let name = &self.data[self.offset..self.offset + name_len];
        let value_start = self.offset + name_len;
        let value = &self.data[value_start..value_start + value_len];
        self.offset = value_start + value_len;
        Ok((name, value))
    }
}

impl<'a> Iterator for PairIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), NvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.data.len() {
            return None;
        }
        let item = self.next_pair();
        self.failed = item.is_err();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(name_len: usize, value_len: usize) {
        let name = vec![b'N'; name_len];
        let value = vec![b'v'; value_len];
        let mut buf = Vec::new();
        encode_pair(&name, &value, &mut buf);
        assert_eq!(buf.len(), encoded_len(&name, &value));
        let pairs: Vec<_> = PairIter::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(pairs, vec![(&name[..], &value[..])]);
    }

    #[test]
    fn lengths_at_the_one_and_four_byte_boundary_round_trip() {
        for len in [
            0, 1, 126, 127, 128, 129, 255, 256, 65000, 65535, 65536, 200_000,
        ] {
            roundtrip(1, len);
            roundtrip(len.max(1), 3);
        }
    }

    #[test]
    fn length_127_takes_one_byte_and_128_takes_four() {
        let mut buf = Vec::new();
        encode_length(127, &mut buf);
        assert_eq!(buf, [127]);
        buf.clear();
        encode_length(128, &mut buf);
        assert_eq!(buf, [0x80, 0, 0, 128]);
    }

    #[test]
    fn truncated_length_field_is_an_error() {
        let err = PairIter::new(&[0x80, 0]).next().unwrap().unwrap_err();
        assert_eq!(err, NvError::TruncatedLength { offset: 0 });
    }

    #[test]
    fn lying_length_is_an_error_without_allocating_it() {
        // Name claims 2 GiB.
        let data = [0xff, 0xff, 0xff, 0xff, 0x01, b'a', b'b'];
        let err = PairIter::new(&data).next().unwrap().unwrap_err();
        assert!(matches!(
            err,
            NvError::LengthExceedsData { available: 2, .. }
        ));
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let mut iter = PairIter::new(&[5, 5, b'x']);
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
    }

    #[test]
    fn names_with_equals_or_nul_are_refused() {
        assert_eq!(check_name(b""), Err(NameError::Empty));
        assert!(matches!(
            check_name(b"A=1"),
            Err(NameError::Forbidden { .. })
        ));
        assert!(matches!(
            check_name(b"A\0"),
            Err(NameError::Forbidden { .. })
        ));
        assert!(check_name(b"HTTP_X_ANY-thing.ok").is_ok());
    }
}
