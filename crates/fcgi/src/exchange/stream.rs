//! Framing one STDIN or DATA stream into records, for both clients: the
//! encoder says how much to read next, counts what goes out against the
//! length the request declared (CONTENT_LENGTH), and refuses to end the
//! stream short of it. The transports only read their source and write.

use fcgi_proto::encode::stream_record_header;
use fcgi_proto::record::{RecordType, HEADER_LEN, STREAM_CHUNK_LEN};

use super::trace::trace_sent_records;
use crate::error::Error;

/// The records of one request stream (STDIN or DATA) within its declared
/// length.
#[derive(Debug)]
pub(crate) struct StreamEncoder {
    record_type: RecordType,
    request_id: u16,
    declared: Option<u64>,
    sent: u64,
}

impl StreamEncoder {
    /// A stream of `record_type` for request `request_id`, `declared` bytes
    /// long when its length is known.
    pub(crate) fn new(record_type: RecordType, request_id: u16, declared: Option<u64>) -> Self {
        StreamEncoder {
            record_type,
            request_id,
            declared,
            sent: 0,
        }
    }

    /// Bytes still to send before the declared length (`None`: no length
    /// was declared).
    pub(crate) fn room(&self) -> Option<u64> {
        self.declared.map(|len| len.saturating_sub(self.sent))
    }

    /// How many bytes to read from the source for the next record: at most
    /// one record's worth, within the declared length; 0 once the declared
    /// length has gone out.
    pub(crate) fn want(&self) -> usize {
        match self.room() {
            Some(room) => room.min(STREAM_CHUNK_LEN as u64) as usize,
            None => STREAM_CHUNK_LEN,
        }
    }

    /// The header of the next record, carrying `len` bytes (1 to
    /// [`STREAM_CHUNK_LEN`], as [`StreamEncoder::want`] allows), which are
    /// counted as sent.
    pub(crate) fn header(&mut self, len: usize) -> [u8; HEADER_LEN] {
        debug_assert!(len > 0 && len <= STREAM_CHUNK_LEN);
        self.sent += len as u64;
        let header = stream_record_header(self.record_type, self.request_id, len);
        trace_sent_records(&header);
        header
    }

    /// The empty record that ends the stream; refused when fewer bytes than
    /// declared went out (the source ended early).
    pub(crate) fn end(&self) -> Result<[u8; HEADER_LEN], Error> {
        if let Some(len) = self.declared.filter(|len| self.sent < *len) {
            return Err(Error::InvalidRequest(format!(
                "request body ended after {} bytes but its length was given as {len}",
                self.sent
            )));
        }
        let end = stream_record_header(self.record_type, self.request_id, 0);
        trace_sent_records(&end);
        Ok(end)
    }
}

/// One read of a blocking body source into `buf` (sized by
/// [`StreamEncoder::want`]), again when interrupted; its failure is the
/// body's ([`Error::Body`]). 0: the source has ended. Both clients' reader
/// loops call it between asking the encoder and writing the record (the
/// blocking body writer on its thread, the async one on tokio's blocking
/// pool).
pub(crate) fn read_body_source(
    reader: &mut (impl std::io::Read + ?Sized),
    buf: &mut [u8],
) -> Result<usize, Error> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other.map_err(Error::Body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_sized_by_record_and_declared_length() {
        let mut stream = StreamEncoder::new(RecordType::Stdin, 3, Some(70_000));
        assert_eq!(stream.want(), STREAM_CHUNK_LEN);
        let header = stream.header(STREAM_CHUNK_LEN);
        assert_eq!(header[1], RecordType::Stdin as u8);
        assert_eq!(u16::from_be_bytes([header[2], header[3]]), 3);
        assert_eq!(
            u16::from_be_bytes([header[4], header[5]]) as usize,
            STREAM_CHUNK_LEN
        );
        assert_eq!(stream.want(), 70_000 - STREAM_CHUNK_LEN);
        stream.header(70_000 - STREAM_CHUNK_LEN);
        assert_eq!(stream.want(), 0);
        assert_eq!(stream.room(), Some(0));
        assert_eq!(stream.end().unwrap(), [1, 5, 0, 3, 0, 0, 0, 0]);
    }

    #[test]
    fn a_body_source_is_read_again_when_interrupted_and_its_error_is_the_bodys() {
        struct Flaky(u8);
        impl std::io::Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0 += 1;
                match self.0 {
                    1 => Err(std::io::ErrorKind::Interrupted.into()),
                    2 => {
                        buf[0] = b'a';
                        Ok(1)
                    }
                    _ => Err(std::io::Error::other("disk gone")),
                }
            }
        }
        let (mut source, mut buf) = (Flaky(0), [0u8; 4]);
        assert_eq!(read_body_source(&mut source, &mut buf).unwrap(), 1);
        assert_eq!(buf[0], b'a');
        let error = read_body_source(&mut source, &mut buf).unwrap_err();
        assert!(matches!(error, Error::Body(_)), "{error:?}");
    }

    #[test]
    fn a_stream_short_of_its_declared_length_does_not_end() {
        let mut stream = StreamEncoder::new(RecordType::Data, 1, Some(10));
        stream.header(4);
        let error = stream.end().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request: request body ended after 4 bytes but its length was given as 10"
        );
    }

    #[test]
    fn a_stream_without_a_declared_length_ends_anywhere() {
        let mut stream = StreamEncoder::new(RecordType::Stdin, 1, None);
        assert_eq!(stream.room(), None);
        assert_eq!(stream.want(), STREAM_CHUNK_LEN);
        stream.header(5);
        assert_eq!(stream.end().unwrap(), [1, 5, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn an_empty_declared_body_reads_nothing_and_ends_at_once() {
        let stream = StreamEncoder::new(RecordType::Stdin, 2, Some(0));
        assert_eq!(stream.want(), 0);
        assert_eq!(stream.end().unwrap(), [1, 5, 0, 2, 0, 0, 0, 0]);
    }
}
