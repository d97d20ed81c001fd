//! The response decoder: an incremental state machine over the bytes a
//! FastCGI server sends.
//!
//! Feed it any slices, down to one byte at a time; it hands out events as soon
//! as they are known. Stream content is handed out borrowed from the input, so
//! a response body is never copied by the decoder. A response ends at
//! END_REQUEST whether or not empty STDOUT/STDERR records came first (php-fpm
//! sends none). Padding and reserved bytes are skipped unread.
//!
//! ```
//! use fcgi_proto::decode::{Decoder, Event};
//! let mut decoder = Decoder::for_request(1);
//! // A STDOUT header arrives alone; its content comes in a later slice.
//! assert_eq!(decoder.decode(&[1, 6, 0, 1, 0, 3, 0, 0]).unwrap(), (8, None));
//! let (used, event) = decoder.decode(b"abc").unwrap();
//! assert_eq!((used, event), (3, Some(Event::Stdout(1, &b"abc"[..]))));
//! ```

use crate::nv::{NvError, PairIter};
use crate::record::{
    type_name, Header, ProtocolStatus, RecordType, HEADER_LEN, MANAGEMENT_REQUEST_ID, VERSION_1,
};

/// The body of an END_REQUEST record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    /// The application's exit status (php-fpm always reports 0).
    pub app_status: u32,
    /// Whether the request completed or was rejected.
    pub protocol_status: ProtocolStatus,
}

/// Something the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// STDOUT content for a request id (possibly part of one record).
    Stdout(u16, &'a [u8]),
    /// STDERR content for a request id (possibly part of one record).
    Stderr(u16, &'a [u8]),
    /// END_REQUEST for a request id: the response is over.
    End(u16, EndRequest),
    /// A GET_VALUES_RESULT management record, its pairs in order.
    Values(Vec<(Vec<u8>, Vec<u8>)>),
    /// An UNKNOWN_TYPE management record: the server did not understand the
    /// management record type given here.
    UnknownType(u8),
}

/// The server broke the protocol. The decoder is unusable afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A record header with a version other than 1.
    #[error(
        "record at byte {offset} has version {version}, expected 1 (is this a FastCGI server?)"
    )]
    WrongVersion {
        /// Stream offset of the header.
        offset: u64,
        /// The version byte that arrived.
        version: u8,
    },
    /// A record for a request id this decoder does not expect.
    #[error("{} record at byte {offset} is for request id {request_id}, expected {expected}", type_name(*record_type))]
    UnexpectedRequestId {
        /// Stream offset of the header.
        offset: u64,
        /// The record type byte.
        record_type: u8,
        /// The request id that arrived.
        request_id: u16,
        /// The id of the request in flight.
        expected: u16,
    },
    /// A record type a server must not send, or not with this request id.
    #[error("unexpected {} record (request id {request_id}) at byte {offset}", type_name(*record_type))]
    UnexpectedType {
        /// Stream offset of the header.
        offset: u64,
        /// The record type byte.
        record_type: u8,
        /// Its request id.
        request_id: u16,
    },
    /// A fixed-size record body with the wrong length.
    #[error("{} record at byte {offset} has {len} content bytes, expected {expected}", type_name(*record_type))]
    BadLength {
        /// Stream offset of the header.
        offset: u64,
        /// The record type byte.
        record_type: u8,
        /// The content length that arrived.
        len: u16,
        /// The length the specification gives.
        expected: u16,
    },
    /// A GET_VALUES_RESULT whose name-value pairs are malformed.
    #[error("malformed FCGI_GET_VALUES_RESULT: {0}")]
    BadValues(NvError),
    /// The decoder was used after it reported an error.
    #[error("decoder used after a protocol error")]
    Poisoned,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting the 8 header bytes.
    Header,
    /// Handing out stream content for the current record.
    Stream {
        record_type: RecordType,
        request_id: u16,
        remaining: usize,
        padding: usize,
    },
    /// Collecting a small fixed or management body into `body`.
    Buffered { header: Header, offset: u64 },
    /// Skipping padding.
    Padding { remaining: usize },
    /// An error was reported.
    Failed,
}

/// Incremental decoder of a server's records. See the module docs.
#[derive(Debug, Clone)]
pub struct Decoder {
    expected: Option<u16>,
    /// A request id whose response already ended on this connection:
    /// records for it are skipped (see [`Decoder::skip_ended`]).
    ended: Option<u16>,
    /// Records skipped for `ended`.
    stray_records: u32,
    state: State,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body: Vec<u8>,
    position: u64,
}

impl Decoder {
    /// A decoder for one request at a time: records for any other non-zero
    /// request id are a protocol error.
    pub fn for_request(request_id: u16) -> Decoder {
        Decoder::new(Some(request_id))
    }

    /// A decoder for a multiplexed connection: records for every request id
    /// are handed out tagged with their id.
    pub fn multiplexed() -> Decoder {
        Decoder::new(None)
    }

    fn new(expected: Option<u16>) -> Decoder {
        Decoder {
            expected,
            ended: None,
            stray_records: 0,
            state: State::Header,
            header: [0; HEADER_LEN],
            header_len: 0,
            body: Vec::new(),
            position: 0,
        }
    }

    /// Expects `request_id` from now on (the next request on a kept
    /// connection). Keeps the decoder's position in the byte stream.
    pub fn expect_request(&mut self, request_id: u16) {
        self.expected = Some(request_id);
    }

    /// A decoder for the next request on this connection, `request_id`,
    /// once this one's response has ended: records still coming for the
    /// request this decoder expected are skipped ([`Decoder::skip_ended`]).
    pub fn for_next_request(&self, request_id: u16) -> Decoder {
        let mut next = Decoder::for_request(request_id);
        if let Some(ended) = self.expected {
            next.skip_ended(ended);
        }
        next
    }

    /// Skips records for `request_id`, a response that already ended on
    /// this connection, instead of failing on them: a server that sends a
    /// record after END_REQUEST (a stray) does not spoil the next request's
    /// response, which has an id of its own. They are counted
    /// ([`Decoder::stray_records`]); a connection that carried one should
    /// not be trusted with another request.
    pub fn skip_ended(&mut self, request_id: u16) {
        self.ended = Some(request_id).filter(|&id| Some(id) != self.expected);
    }

    /// Records skipped as strays of an ended response.
    pub fn stray_records(&self) -> u32 {
        self.stray_records
    }

    /// True when the decoder is between records (no record partly read).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header) && self.header_len == 0
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Consumes bytes from `input` until one event is complete or the input
    /// runs out. Returns how many bytes were used and the event, if any;
    /// without an event all of `input` was used.
    pub fn decode<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Event<'a>>), DecodeError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Failed => return Err(DecodeError::Poisoned),
                State::Header => {
                    if rest.is_empty() {
                        return Ok(self.advance(used, None));
                    }
                    if self.header_len == 0 && rest.len() >= HEADER_LEN {
                        // The usual case, a whole header in the input: one
                        // fixed-size copy.
                        self.header.copy_from_slice(&rest[..HEADER_LEN]);
                        self.header_len = HEADER_LEN;
                        used += HEADER_LEN;
                    } else {
                        let take = (HEADER_LEN - self.header_len).min(rest.len());
                        self.header[self.header_len..self.header_len + take]
                            .copy_from_slice(&rest[..take]);
                        self.header_len += take;
                        used += take;
                    }
                    if self.header_len == HEADER_LEN {
                        self.header_len = 0;
                        let offset = self.position + used as u64 - HEADER_LEN as u64;
                        if let Err(err) = self.start_record(Header::parse(&self.header), offset) {
                            self.state = State::Failed;
                            return Err(err);
                        }
                    }
                }
                State::Stream {
                    record_type,
                    request_id,
                    remaining,
                    padding,
                } => {
                    if rest.is_empty() {
                        return Ok(self.advance(used, None));
                    }
                    let take = remaining.min(rest.len());
                    let chunk = &rest[..take];
                    used += take;
                    self.state = if take == remaining {
                        after_content(padding)
                    } else {
                        State::Stream {
                            record_type,
                            request_id,
                            remaining: remaining - take,
                            padding,
                        }
                    };
                    let event = if record_type == RecordType::Stdout {
                        Event::Stdout(request_id, chunk)
                    } else {
                        Event::Stderr(request_id, chunk)
                    };
                    return Ok(self.advance(used, Some(event)));
                }
                State::Buffered { header, offset } => {
                    let want = header.content_length as usize - self.body.len();
                    let take = want.min(rest.len());
                    // The usual case, a whole END_REQUEST in one read, is
                    // decoded in place: nothing is copied or allocated.
                    let whole = self.body.is_empty() && take == want;
                    if !whole {
                        self.body.extend_from_slice(&rest[..take]);
                    }
                    used += take;
                    if take < want {
                        return Ok(self.advance(used, None));
                    }
                    self.state = after_content(header.padding_length as usize);
                    let finished = if whole {
                        finish_buffered(header, offset, &rest[..take])
                    } else {
                        finish_buffered(header, offset, &self.body)
                    };
                    match finished {
                        Ok(event) => return Ok(self.advance(used, Some(event))),
                        Err(err) => {
                            self.state = State::Failed;
                            return Err(err);
                        }
                    }
                }
                State::Padding { remaining } => {
                    let take = remaining.min(rest.len());
                    used += take;
                    if take < remaining {
                        self.state = State::Padding {
                            remaining: remaining - take,
                        };
                        return Ok(self.advance(used, None));
                    }
                    self.state = State::Header;
                }
            }
        }
    }

    fn advance<'a>(&mut self, used: usize, event: Option<Event<'a>>) -> (usize, Option<Event<'a>>) {
        self.position += used as u64;
        (used, event)
    }

    fn start_record(&mut self, header: Header, offset: u64) -> Result<(), DecodeError> {
        if header.version != VERSION_1 {
            return Err(DecodeError::WrongVersion {
                offset,
                version: header.version,
            });
        }
        let unexpected_type = || DecodeError::UnexpectedType {
            offset,
            record_type: header.record_type,
            request_id: header.request_id,
        };
        let record_type = RecordType::from_u8(header.record_type).ok_or_else(unexpected_type)?;
        let management = header.request_id == MANAGEMENT_REQUEST_ID;
        match record_type {
            RecordType::GetValuesResult | RecordType::UnknownType if management => {}
            RecordType::Stdout | RecordType::Stderr | RecordType::EndRequest if !management => {
                if let Some(expected) = self.expected {
                    if header.request_id != expected {
                        return self.not_expected(header, offset, expected);
                    }
                }
            }
            _ => return Err(unexpected_type()),
        }
        let fixed_len = match record_type {
            RecordType::EndRequest | RecordType::UnknownType => Some(8),
            _ => None,
        };
        if let Some(expected) = fixed_len {
            if header.content_length != expected {
                return Err(DecodeError::BadLength {
                    offset,
                    record_type: header.record_type,
                    len: header.content_length,
                    expected,
                });
            }
        }
        self.state = match record_type {
            // An empty stream record (the stream's end) has nothing to hand out.
            RecordType::Stdout | RecordType::Stderr if header.content_length == 0 => {
                after_content(header.padding_length as usize)
            }
            RecordType::Stdout | RecordType::Stderr => State::Stream {
                record_type,
                request_id: header.request_id,
                remaining: header.content_length as usize,
                padding: header.padding_length as usize,
            },
            _ => {
                self.body.clear();
                State::Buffered { header, offset }
            }
        };
        Ok(())
    }
}

impl Decoder {
    /// A stream or END_REQUEST record for `header.request_id`, not the id
    /// expected: skipped whole when it is a stray of the ended response,
    /// else an error. Out of line: never on the way of a good response.
    #[cold]
    #[inline(never)]
    fn not_expected(
        &mut self,
        header: Header,
        offset: u64,
        expected: u16,
    ) -> Result<(), DecodeError> {
        if self.ended != Some(header.request_id) {
            return Err(DecodeError::UnexpectedRequestId {
                offset,
                record_type: header.record_type,
                request_id: header.request_id,
                expected,
            });
        }
        self.stray_records += 1;
        let len = header.content_length as usize + header.padding_length as usize;
        self.state = after_content(len);
        Ok(())
    }
}

/// The state after a record's content: its padding, or the next header.
fn after_content(padding: usize) -> State {
    if padding == 0 {
        State::Header
    } else {
        State::Padding { remaining: padding }
    }
}

/// The event of a whole buffered record (END_REQUEST, UNKNOWN_TYPE,
/// GET_VALUES_RESULT) whose content is `body`; fixed lengths were checked
/// when the header arrived.
fn finish_buffered(
    header: Header,
    offset: u64,
    body: &[u8],
) -> Result<Event<'static>, DecodeError> {
    match RecordType::from_u8(header.record_type) {
        Some(RecordType::EndRequest) => Ok(Event::End(
            header.request_id,
            EndRequest {
                app_status: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                protocol_status: ProtocolStatus::from_u8(body[4]),
            },
        )),
        Some(RecordType::UnknownType) => Ok(Event::UnknownType(body[0])),
        Some(RecordType::GetValuesResult) => PairIter::new(body)
            .map(|pair| pair.map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .map(Event::Values)
            .map_err(DecodeError::BadValues),
        _ => Err(DecodeError::UnexpectedType {
            offset,
            record_type: header.record_type,
            request_id: header.request_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{encode_record, encode_stream};

    #[derive(Debug, Default, PartialEq)]
    struct Collected {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        end: Option<EndRequest>,
        values: Vec<(Vec<u8>, Vec<u8>)>,
        unknown: Vec<u8>,
    }

    fn feed(decoder: &mut Decoder, bytes: &[u8], step: usize) -> Result<Collected, DecodeError> {
        let mut c = Collected::default();
        for piece in bytes.chunks(step) {
            let mut input = piece;
            while !input.is_empty() {
                let (used, event) = decoder.decode(input)?;
                input = &input[used..];
                match event {
                    Some(Event::Stdout(_, b)) => c.stdout.extend_from_slice(b),
                    Some(Event::Stderr(_, b)) => c.stderr.extend_from_slice(b),
                    Some(Event::End(_, e)) => c.end = Some(e),
                    Some(Event::Values(v)) => c.values.extend(v),
                    Some(Event::UnknownType(t)) => c.unknown.push(t),
                    None => assert!(input.is_empty()),
                }
            }
        }
        Ok(c)
    }

    fn end_record(id: u16, app: u32, status: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let a = app.to_be_bytes();
        encode_record(
            RecordType::EndRequest,
            id,
            &[a[0], a[1], a[2], a[3], status, 0xde, 0xad, 0xbe],
            &mut out,
        );
        out
    }

    #[test]
    fn response_split_into_single_bytes_decodes_the_same() {
        let mut bytes = Vec::new();
        encode_stream(RecordType::Stderr, 1, b"warning", false, &mut bytes);
        encode_stream(
            RecordType::Stdout,
            1,
            b"Status: 200\r\n\r\nbody",
            true,
            &mut bytes,
        );
        bytes.extend(end_record(1, 3, 0));
        for step in [1, 2, 7, 8, 9, 1000] {
            let c = feed(&mut Decoder::for_request(1), &bytes, step).unwrap();
            assert_eq!(c.stdout, b"Status: 200\r\n\r\nbody");
            assert_eq!(c.stderr, b"warning");
            assert_eq!(
                c.end,
                Some(EndRequest {
                    app_status: 3,
                    protocol_status: ProtocolStatus::RequestComplete
                })
            );
        }
    }

    #[test]
    fn padding_is_skipped() {
        let mut bytes = Header::new(RecordType::Stdout, 1, 2, 6).to_bytes().to_vec();
        bytes.extend_from_slice(b"hi\xff\xff\xff\xff\xff\xff");
        bytes.extend(end_record(1, 0, 0));
        let c = feed(&mut Decoder::for_request(1), &bytes, 1).unwrap();
        assert_eq!(c.stdout, b"hi");
        assert!(c.end.is_some());
    }

    #[test]
    fn wrong_version_is_named() {
        let err = feed(&mut Decoder::for_request(1), &[2, 6, 0, 1, 0, 0, 0, 0], 8).unwrap_err();
        assert_eq!(
            err,
            DecodeError::WrongVersion {
                offset: 0,
                version: 2
            }
        );
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn record_for_another_request_is_an_error() {
        let err = feed(&mut Decoder::for_request(1), &[1, 6, 0, 2, 0, 0, 0, 0], 8).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnexpectedRequestId {
                request_id: 2,
                expected: 1,
                ..
            }
        ));
    }

    #[test]
    fn records_of_an_ended_request_are_skipped_and_counted_in_any_split() {
        // Strays of request 1 (padded STDOUT, STDERR, a second END_REQUEST)
        // around request 2's answer; a record for request 3 is still an
        // error.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&Header::new(RecordType::Stdout, 1, 5, 3).to_bytes());
        bytes.extend_from_slice(b"stale\0\0\0");
        encode_stream(RecordType::Stdout, 2, b"fresh", false, &mut bytes);
        encode_stream(RecordType::Stderr, 1, b"old", false, &mut bytes);
        bytes.extend_from_slice(&end_record(1, 0, 0));
        bytes.extend_from_slice(&end_record(2, 7, 0));
        for step in [1, 3, 8, bytes.len()] {
            let mut d = Decoder::for_request(1).for_next_request(2);
            let c = feed(&mut d, &bytes, step).unwrap();
            assert_eq!(c.stdout, b"fresh");
            assert!(c.stderr.is_empty());
            assert_eq!(c.end.map(|e| e.app_status), Some(7));
            assert_eq!(d.stray_records(), 3);
            assert_eq!(d.position(), bytes.len() as u64);
        }
        let mut d = Decoder::for_request(2);
        d.skip_ended(1);
        let err = feed(&mut d, &[1, 6, 0, 3, 0, 0, 0, 0], 8).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnexpectedRequestId {
                request_id: 3,
                expected: 2,
                ..
            }
        ));
        // The id expected is never skipped.
        let mut d = Decoder::for_request(2).for_next_request(2);
        let c = feed(&mut d, &end_record(2, 0, 0), 8).unwrap();
        assert!(c.end.is_some());
        assert_eq!(d.stray_records(), 0);
    }

    #[test]
    fn multiplexed_decoder_tags_events_with_their_id() {
        let mut bytes = Vec::new();
        encode_stream(RecordType::Stdout, 2, b"b", false, &mut bytes);
        encode_stream(RecordType::Stdout, 1, b"a", false, &mut bytes);
        let mut d = Decoder::multiplexed();
        let (n, e) = d.decode(&bytes).unwrap();
        assert_eq!(e, Some(Event::Stdout(2, &b"b"[..])));
        let (_, e) = d.decode(&bytes[n..]).unwrap();
        assert_eq!(e, Some(Event::Stdout(1, &b"a"[..])));
    }

    #[test]
    fn unknown_and_request_side_types_are_errors() {
        for ty in [0u8, 1, 2, 4, 5, 8, 9, 12, 200] {
            let err =
                feed(&mut Decoder::for_request(1), &[1, ty, 0, 1, 0, 0, 0, 0], 8).unwrap_err();
            assert!(
                matches!(err, DecodeError::UnexpectedType { record_type, .. } if record_type == ty),
                "type {ty}"
            );
        }
    }

    #[test]
    fn end_request_with_wrong_length_is_an_error() {
        let err = feed(
            &mut Decoder::for_request(1),
            &[1, 3, 0, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0],
            8,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DecodeError::BadLength {
                len: 5,
                expected: 8,
                ..
            }
        ));
    }

    #[test]
    fn management_records_are_not_mistaken_for_the_response() {
        let mut bytes = Vec::new();
        let mut content = Vec::new();
        crate::nv::encode_pair(b"FCGI_MPXS_CONNS", b"0", &mut content);
        encode_record(RecordType::GetValuesResult, 0, &content, &mut bytes);
        encode_record(
            RecordType::UnknownType,
            0,
            &[42, 0, 0, 0, 0, 0, 0, 0],
            &mut bytes,
        );
        let c = feed(&mut Decoder::for_request(1), &bytes, 3).unwrap();
        assert_eq!(c.values, vec![(b"FCGI_MPXS_CONNS".to_vec(), b"0".to_vec())]);
        assert_eq!(c.unknown, vec![42]);
        assert!(c.end.is_none() && c.stdout.is_empty());
    }

    #[test]
    fn decoder_stays_failed_after_an_error() {
        let mut d = Decoder::for_request(1);
        assert!(d.decode(&[9, 9, 9, 9, 9, 9, 9, 9]).is_err());
        assert_eq!(d.decode(&[1]).unwrap_err(), DecodeError::Poisoned);
    }

    #[test]
    fn non_complete_statuses_are_reported() {
        for status in 1..=4u8 {
            let c = feed(&mut Decoder::for_request(1), &end_record(1, 0, status), 8).unwrap();
            assert_eq!(c.end.unwrap().protocol_status.to_u8(), status);
        }
    }
}
