//! Differential round trip of the encoder and decoder: arbitrary params and
//! body encoded as a request must come back unchanged, pair by pair and byte
//! by byte, from the records; arbitrary stdout/stderr encoded as a response
//! must come back unchanged from the decoder, whatever the slicing.
#![no_main]

use arbitrary::Arbitrary;
use fcgi_proto::decode::{Decoder, Event};
use fcgi_proto::encode::{encode_params, encode_record, encode_stream, ParamsOptions};
use fcgi_proto::nv::PairIter;
use fcgi_proto::record::{Header, RecordType, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    id: u16,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    split: bool,
    record_limit: u16,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    step: u8,
}

fuzz_target!(|input: Input| {
    let id = input.id.max(1);
    // Request side: PARAMS.
    let options = ParamsOptions { split_oversized: input.split, max_record_content: usize::from(input.record_limit) };
    let mut out = Vec::new();
    let refs = input.pairs.iter().map(|(n, v)| (&n[..], &v[..]));
    if encode_params(id, refs, &options, &mut out).is_ok() {
        let mut content = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let header = Header::parse(rest[..HEADER_LEN].try_into().unwrap());
            assert_eq!(header.request_id, id);
            assert_eq!(header.record_type, RecordType::Params as u8);
            assert!(header.body_len() <= 65535);
            let body = &rest[HEADER_LEN..HEADER_LEN + usize::from(header.content_length)];
            if !input.split {
                // Every record holds whole pairs.
                assert!(PairIter::new(body).all(|p| p.is_ok()));
            }
            content.extend_from_slice(body);
            rest = &rest[HEADER_LEN + header.body_len()..];
        }
        let decoded: Vec<(Vec<u8>, Vec<u8>)> = PairIter::new(&content)
            .map(|p| p.map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .expect("encoded params decode");
        assert_eq!(decoded, input.pairs);
    } else {
        assert!(out.is_empty());
    }
    // Response side: STDERR, STDOUT, END_REQUEST through the decoder.
    let mut response = Vec::new();
    encode_stream(RecordType::Stderr, id, &input.stderr, false, &mut response);
    encode_stream(RecordType::Stdout, id, &input.stdout, true, &mut response);
    encode_record(RecordType::EndRequest, id, &[0, 0, 0, 7, 0, 0, 0, 0], &mut response);
    let mut decoder = Decoder::for_request(id);
    let (mut stdout, mut stderr, mut app_status) = (Vec::new(), Vec::new(), None);
    for chunk in response.chunks(usize::from(input.step).max(1)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, event) = decoder.decode(rest).expect("valid response decodes");
            rest = &rest[used..];
            match event {
                Some(Event::Stdout(_, b)) => stdout.extend_from_slice(b),
                Some(Event::Stderr(_, b)) => stderr.extend_from_slice(b),
                Some(Event::End(_, end)) => app_status = Some(end.app_status),
                _ => {}
            }
        }
    }
    assert_eq!(stdout, input.stdout);
    assert_eq!(stderr, input.stderr);
    assert_eq!(app_status, Some(7));
});
