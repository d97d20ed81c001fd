//! The request encoder: turns a request into the records a FastCGI server
//! expects, appended to a caller's buffer.
//!
//! The rules it keeps (see the project's protocol notes):
//! - content + padding of a record never exceeds 65535 bytes (no padding is
//!   written at all; it is optional);
//! - PARAMS are packed so that every pair is whole inside one record, because
//!   php-fpm parses each PARAMS record on its own; a pair too large for one
//!   record is refused unless [`ParamsOptions::split_oversized`] is set;
//! - every stream ends with its empty record, even an empty stream;
//! - STDIN and DATA go in records of at most [`STREAM_CHUNK_LEN`] bytes.

use crate::nv::{self, NameError};
use crate::record::{
    Header, RecordType, Role, FLAG_KEEP_CONN, HEADER_LEN, MANAGEMENT_REQUEST_ID, MAX_CONTENT_LEN,
    STREAM_CHUNK_LEN,
};

/// Why a request could not be encoded. Nothing is appended to the output
/// buffer when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A parameter name cannot be sent.
    #[error("invalid parameter: {0}")]
    InvalidName(#[from] NameError),
    /// One name-value pair does not fit in a single PARAMS record.
    #[error(
        "parameter {name} is {size} bytes encoded, more than the {limit} bytes one FastCGI record can carry; \
         php-fpm cannot receive it (enable splitting of oversized params for servers that reassemble them)"
    )]
    ParamTooLarge {
        /// The parameter name, lossily decoded.
        name: String,
        /// Encoded size of the pair.
        size: usize,
        /// Largest pair that fits in one record.
        limit: usize,
    },
    /// A value is longer than a FastCGI length field can express.
    #[error(
        "value of parameter {name} is {len} bytes, more than the {} FastCGI allows",
        nv::MAX_LEN
    )]
    ValueTooLong {
        /// The parameter name, lossily decoded.
        name: String,
        /// Length of the value.
        len: usize,
    },
}

/// How PARAMS are laid out in records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsOptions {
    /// Split a pair that does not fit in one record across several records,
    /// as the specification permits. php-fpm resets the connection when this
    /// happens, so it is off by default and such a pair is refused instead.
    pub split_oversized: bool,
    /// Largest content of one PARAMS record (at most 65535).
    pub max_record_content: usize,
}

impl Default for ParamsOptions {
    fn default() -> Self {
        ParamsOptions {
            split_oversized: false,
            max_record_content: MAX_CONTENT_LEN,
        }
    }
}

/// Appends one record with the given content (at most 65535 bytes; longer
/// content is the caller's bug and is cut to 65535, so use [`encode_stream`]
/// for data of any size).
pub fn encode_record(record_type: RecordType, request_id: u16, content: &[u8], out: &mut Vec<u8>) {
    let content = &content[..content.len().min(MAX_CONTENT_LEN)];
    out.extend_from_slice(
        &Header::new(record_type, request_id, content.len() as u16, 0).to_bytes(),
    );
    out.extend_from_slice(content);
}

/// Appends a BEGIN_REQUEST record.
pub fn encode_begin_request(request_id: u16, role: Role, keep_conn: bool, out: &mut Vec<u8>) {
    let role = role.to_u16().to_be_bytes();
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    encode_record(
        RecordType::BeginRequest,
        request_id,
        &[role[0], role[1], flags, 0, 0, 0, 0, 0],
        out,
    );
}

/// Appends an ABORT_REQUEST record.
pub fn encode_abort_request(request_id: u16, out: &mut Vec<u8>) {
    encode_record(RecordType::AbortRequest, request_id, &[], out);
}

/// The header of one stream record carrying `len` bytes (at most 65535), for
/// transports that write the content from the caller's buffer without copying.
pub fn stream_record_header(
    record_type: RecordType,
    request_id: u16,
    len: usize,
) -> [u8; HEADER_LEN] {
    Header::new(record_type, request_id, len.min(MAX_CONTENT_LEN) as u16, 0).to_bytes()
}

/// Appends `data` as records of the stream `record_type` (STDIN, DATA, or a
/// server's STDOUT/STDERR), in chunks of at most [`STREAM_CHUNK_LEN`] bytes,
/// followed by the stream's empty record when `end` is true.
pub fn encode_stream(
    record_type: RecordType,
    request_id: u16,
    data: &[u8],
    end: bool,
    out: &mut Vec<u8>,
) {
    out.reserve(data.len() + (data.len() / STREAM_CHUNK_LEN + 2) * HEADER_LEN);
    for chunk in data.chunks(STREAM_CHUNK_LEN) {
        encode_record(record_type, request_id, chunk, out);
    }
    if end {
        encode_record(record_type, request_id, &[], out);
    }
}

/// Appends the PARAMS stream for `pairs`, ending with the empty PARAMS record.
///
/// Pairs are packed into as few records as possible with every pair whole
/// inside one record. On error nothing is appended.
///
/// ```
/// use fcgi_proto::encode::{encode_params, EncodeError, ParamsOptions};
/// let mut out = Vec::new();
/// let huge = vec![b'x'; 70_000];
/// let err = encode_params(1, [(&b"BIG"[..], &huge[..])].into_iter(), &ParamsOptions::default(), &mut out);
/// assert!(matches!(err, Err(EncodeError::ParamTooLarge { .. })));
/// assert!(out.is_empty());
/// ```
pub fn encode_params<'a, I>(
    request_id: u16,
    pairs: I,
    options: &ParamsOptions,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let start = out.len();
    let result = encode_params_inner(request_id, pairs, options, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A PARAMS record being filled in place: its header is patched on close.
struct OpenRecord {
    header_at: usize,
}

impl OpenRecord {
    fn open(out: &mut Vec<u8>) -> OpenRecord {
        let header_at = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        OpenRecord { header_at }
    }

    fn content_len(&self, out: &[u8]) -> usize {
        out.len() - self.header_at - HEADER_LEN
    }

    /// Writes the header, or removes the placeholder of an empty record.
    fn close(self, request_id: u16, out: &mut Vec<u8>) {
        let len = self.content_len(out);
        if len == 0 {
            out.truncate(self.header_at);
            return;
        }
        let header = Header::new(RecordType::Params, request_id, len as u16, 0).to_bytes();
        out[self.header_at..self.header_at + HEADER_LEN].copy_from_slice(&header);
    }
}

fn encode_params_inner<'a, I>(
    request_id: u16,
    pairs: I,
    options: &ParamsOptions,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let max = options.max_record_content.clamp(8, MAX_CONTENT_LEN);
    let mut record = OpenRecord::open(out);
    for (name, value) in pairs {
        nv::check_name(name)?;
        if value.len() > nv::MAX_LEN {
            return Err(EncodeError::ValueTooLong {
                name: String::from_utf8_lossy(name).into_owned(),
                len: value.len(),
            });
        }
        let size = nv::encoded_len(name, value);
        if record.content_len(out) + size > max {
            record.close(request_id, out);
            record = OpenRecord::open(out);
        }
        if size <= max {
            nv::encode_pair(name, value, out);
            continue;
        }
        if !options.split_oversized {
            return Err(EncodeError::ParamTooLarge {
                name: String::from_utf8_lossy(name).into_owned(),
                size,
                limit: max,
            });
        }
        // Split as the specification allows: the pair's bytes run on across
        // full records; the last piece stays open for the next pairs.
        let mut encoded = Vec::with_capacity(size);
        nv::encode_pair(name, value, &mut encoded);
        let mut rest = &encoded[..];
        while !rest.is_empty() {
            let room = max - record.content_len(out);
            let (piece, tail) = rest.split_at(room.min(rest.len()));
            out.extend_from_slice(piece);
            rest = tail;
            if !rest.is_empty() {
                record.close(request_id, out);
                record = OpenRecord::open(out);
            }
        }
    }
    record.close(request_id, out);
    encode_record(RecordType::Params, request_id, &[], out);
    Ok(())
}

/// Appends a GET_VALUES management record asking for `names` (for example
/// [`crate::record::MAX_CONNS`]). Names that do not fit are left out.
pub fn encode_get_values<'a, I>(names: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a str>,
{
    let mut content = Vec::new();
    for name in names {
        if content.len() + nv::encoded_len(name.as_bytes(), b"") <= MAX_CONTENT_LEN {
            nv::encode_pair(name.as_bytes(), b"", &mut content);
        }
    }
    encode_record(RecordType::GetValues, MANAGEMENT_REQUEST_ID, &content, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nv::PairIter;
    use crate::record::HEADER_LEN;

    /// Splits encoded bytes into (header, content) records.
    fn records(mut bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let header = Header::parse(bytes[..HEADER_LEN].try_into().unwrap());
            let body = &bytes[HEADER_LEN..HEADER_LEN + header.body_len()];
            out.push((header, body[..header.content_length as usize].to_vec()));
            bytes = &bytes[HEADER_LEN + header.body_len()..];
        }
        out
    }

    #[test]
    fn begin_request_carries_role_and_keep_conn() {
        let mut out = Vec::new();
        encode_begin_request(7, Role::Filter, true, &mut out);
        assert_eq!(out, [1, 1, 0, 7, 0, 8, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn empty_stream_still_gets_its_terminator() {
        let mut out = Vec::new();
        encode_stream(RecordType::Stdin, 1, b"", true, &mut out);
        assert_eq!(out, [1, 5, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn stdin_is_cut_in_chunks_of_65528() {
        let data = vec![9u8; STREAM_CHUNK_LEN * 2 + 5];
        let mut out = Vec::new();
        encode_stream(RecordType::Stdin, 1, &data, true, &mut out);
        let lens: Vec<_> = records(&out)
            .iter()
            .map(|(h, _)| h.content_length)
            .collect();
        assert_eq!(lens, [65528, 65528, 5, 0]);
    }

    #[test]
    fn params_keep_every_pair_whole_inside_one_record() {
        let big = vec![b'v'; 60_000];
        let names: Vec<String> = (0..5).map(|i| format!("P_{i}")).collect();
        let pairs: Vec<(&[u8], &[u8])> = names.iter().map(|n| (n.as_bytes(), &big[..])).collect();
        let mut out = Vec::new();
        encode_params(
            1,
            pairs.iter().copied(),
            &ParamsOptions::default(),
            &mut out,
        )
        .unwrap();
        let recs = records(&out);
        assert_eq!(
            recs.len(),
            6,
            "one record per 60 KB pair plus the terminator"
        );
        for (header, content) in &recs[..5] {
            assert_eq!(header.record_type, RecordType::Params as u8);
            assert!(header.body_len() <= 65535);
            let decoded: Vec<_> = PairIter::new(content).collect::<Result<_, _>>().unwrap();
            assert_eq!(decoded.len(), 1);
        }
        assert_eq!(recs[5].0.content_length, 0);
    }

    #[test]
    fn small_params_share_one_record() {
        let mut out = Vec::new();
        let pairs = [(&b"A"[..], &b"1"[..]), (b"B", b"2")];
        encode_params(1, pairs, &ParamsOptions::default(), &mut out).unwrap();
        assert_eq!(records(&out).len(), 2);
    }

    #[test]
    fn a_pair_that_fills_a_record_exactly_fits() {
        // 1 + 4 + 1 + value = 65535
        let value = vec![b'x'; 65535 - 6];
        let mut out = Vec::new();
        encode_params(
            1,
            [(&b"N"[..], &value[..])],
            &ParamsOptions::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(records(&out)[0].0.content_length, 65535);
        let too_big = vec![b'x'; 65535 - 5];
        let err = encode_params(
            1,
            [(&b"N"[..], &too_big[..])],
            &ParamsOptions::default(),
            &mut out,
        );
        assert!(
            matches!(err, Err(EncodeError::ParamTooLarge { ref name, size: 65536, .. }) if name == "N")
        );
    }

    #[test]
    fn oversized_pair_is_split_when_allowed_and_reassembles() {
        let value = vec![b'z'; 150_000];
        let options = ParamsOptions {
            split_oversized: true,
            ..ParamsOptions::default()
        };
        let mut out = Vec::new();
        let pairs = [
            (&b"BEFORE"[..], &b"1"[..]),
            (b"HUGE", &value[..]),
            (b"AFTER", b"2"),
        ];
        encode_params(1, pairs, &options, &mut out).unwrap();
        let recs = records(&out);
        assert!(recs.len() >= 4);
        let joined: Vec<u8> = recs.iter().flat_map(|(_, c)| c.clone()).collect();
        let decoded: Vec<_> = PairIter::new(&joined).collect::<Result<_, _>>().unwrap();
        assert_eq!(decoded, pairs.to_vec());
    }

    #[test]
    fn invalid_names_are_refused_and_nothing_is_written() {
        let mut out = vec![42];
        let err = encode_params(
            1,
            [(&b"A"[..], &b"1"[..]), (b"B=C", b"2")],
            &ParamsOptions::default(),
            &mut out,
        );
        assert!(matches!(err, Err(EncodeError::InvalidName(_))));
        assert_eq!(out, [42]);
    }

    #[test]
    fn get_values_uses_request_id_zero() {
        let mut out = Vec::new();
        encode_get_values(["FCGI_MPXS_CONNS"], &mut out);
        let recs = records(&out);
        assert_eq!(recs[0].0.request_id, 0);
        assert_eq!(recs[0].0.record_type, RecordType::GetValues as u8);
    }
}
