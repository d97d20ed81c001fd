//! Whether a connection may carry another request after END_REQUEST, for
//! both clients: the decision is made here, the transports only obey it
//! (park the connection, or close it).

use fcgi_proto::decode::Decoder;

/// True when the connection whose response just ended (END_REQUEST was
/// decoded by `decoder`) may carry the next request: keep-alive is on
/// (`keep_alive`), the whole request went out (`request_sent`: the server
/// answered before reading all of the body otherwise), and what was read
/// after END_REQUEST (`rest`) is at most its padding, nothing of another
/// record; and the response brought no stray record of the one before it
/// (a server that sends records after END_REQUEST may send more).
pub(crate) fn reusable_after_end(
    decoder: &mut Decoder,
    rest: &[u8],
    request_sent: bool,
    keep_alive: bool,
) -> bool {
    if !(keep_alive && request_sent) {
        return false;
    }
    let at_boundary =
        rest.is_empty() || matches!(decoder.decode(rest), Ok((used, None)) if used == rest.len());
    at_boundary && decoder.is_idle() && decoder.stray_records() == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use fcgi_proto::decode::Event;
    use fcgi_proto::record::{Header, RecordType};

    /// A decoder that has just decoded END_REQUEST (with `padding` bytes of
    /// padding announced), and the padding.
    fn ended(padding: u8) -> (Decoder, Vec<u8>) {
        let mut decoder = Decoder::for_request(1);
        let mut record = Header::new(RecordType::EndRequest, 1, 8, padding)
            .to_bytes()
            .to_vec();
        record.extend_from_slice(&[0; 8]);
        let (used, event) = decoder.decode(&record).unwrap();
        assert_eq!(used, record.len());
        assert!(matches!(event, Some(Event::End(1, _))));
        (decoder, vec![0; padding as usize])
    }

    #[test]
    fn a_clean_end_keeps_the_connection() {
        let (mut decoder, _) = ended(0);
        assert!(reusable_after_end(&mut decoder, &[], true, true));
        let (mut decoder, padding) = ended(4);
        assert!(reusable_after_end(&mut decoder, &padding, true, true));
    }

    #[test]
    fn keep_alive_off_or_a_body_not_all_sent_closes_it() {
        let (mut decoder, _) = ended(0);
        assert!(!reusable_after_end(&mut decoder, &[], true, false));
        assert!(!reusable_after_end(&mut decoder, &[], false, true));
    }

    #[test]
    fn a_stray_of_the_response_before_closes_it() {
        let mut decoder = Decoder::for_request(2);
        decoder.skip_ended(1);
        let mut input = Header::new(RecordType::Stdout, 1, 5, 3).to_bytes().to_vec();
        input.extend_from_slice(b"stale\0\0\0");
        input.extend_from_slice(&Header::new(RecordType::EndRequest, 2, 8, 0).to_bytes());
        input.extend_from_slice(&[0; 8]);
        let (used, event) = decoder.decode(&input).unwrap();
        assert_eq!(used, input.len());
        assert!(matches!(event, Some(Event::End(2, _))));
        assert!(!reusable_after_end(&mut decoder, &[], true, true));
    }

    #[test]
    fn bytes_after_the_end_close_it() {
        let (mut decoder, _) = ended(0);
        // Part of a stray record's header.
        assert!(!reusable_after_end(&mut decoder, &[1, 6, 0], true, true));
        let (mut decoder, _) = ended(4);
        // Padding that has not all come yet.
        assert!(!reusable_after_end(&mut decoder, &[0, 0], true, true));
    }
}
