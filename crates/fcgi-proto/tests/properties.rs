//! Property tests: encoding then decoding round-trips, and no input makes the
//! decoders panic.

use fcgi_proto::decode::{Decoder, Event};
use fcgi_proto::encode::{encode_params, encode_stream, ParamsOptions};
use fcgi_proto::head::HeadParser;
use fcgi_proto::nv::{encode_pair, PairIter};
use fcgi_proto::record::{Header, RecordType, HEADER_LEN};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Names of any length around the 127/128 boundary, without '=' or NUL.
    prop_oneof![
        proptest::collection::vec(1u8..=255, 1..140),
        (120usize..300).prop_map(|n| vec![b'N'; n]),
    ]
    .prop_map(|v| {
        v.into_iter()
            .map(|b| if b == b'=' { b'x' } else { b })
            .collect()
    })
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (0usize..70_000).prop_map(|n| vec![b'v'; n]),
    ]
}

proptest! {
    #[test]
    fn name_value_pairs_round_trip(pairs in proptest::collection::vec((name(), value()), 0..8)) {
        let mut buf = Vec::new();
        for (n, v) in &pairs {
            encode_pair(n, v, &mut buf);
        }
        let decoded: Vec<(Vec<u8>, Vec<u8>)> = PairIter::new(&buf)
            .map(|p| p.map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(decoded, pairs);
    }

    #[test]
    fn params_records_round_trip_and_keep_pairs_whole(pairs in proptest::collection::vec((name(), value()), 0..8)) {
        let mut out = Vec::new();
        let refs = pairs.iter().map(|(n, v)| (&n[..], &v[..]));
        match encode_params(1, refs, &ParamsOptions::default(), &mut out) {
            Err(_) => prop_assert!(out.is_empty()),
            Ok(()) => {
                let mut rest = &out[..];
                let mut decoded = Vec::new();
                let mut saw_end = false;
                while !rest.is_empty() {
                    let header = Header::parse(rest[..HEADER_LEN].try_into().unwrap());
                    prop_assert!(header.body_len() <= 65535);
                    let content = &rest[HEADER_LEN..HEADER_LEN + header.content_length as usize];
                    if content.is_empty() { saw_end = true; }
                    for pair in PairIter::new(content) {
                        let (n, v) = pair.unwrap();
                        decoded.push((n.to_vec(), v.to_vec()));
                    }
                    rest = &rest[HEADER_LEN + header.body_len()..];
                }
                prop_assert!(saw_end);
                prop_assert_eq!(decoded, pairs);
            }
        }
    }

    #[test]
    fn stream_records_round_trip_through_the_decoder(
        data in proptest::collection::vec(any::<u8>(), 0..150_000),
        step in 1usize..5000,
    ) {
        let mut bytes = Vec::new();
        encode_stream(RecordType::Stdout, 3, &data, true, &mut bytes);
        bytes.extend_from_slice(&[1, 3, 0, 3, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut decoder = Decoder::for_request(3);
        let mut out = Vec::new();
        let mut ended = false;
        for chunk in bytes.chunks(step) {
            let mut input = chunk;
            while !input.is_empty() {
                let (used, event) = decoder.decode(input).unwrap();
                input = &input[used..];
                match event {
                    Some(Event::Stdout(3, b)) => out.extend_from_slice(b),
                    Some(Event::End(3, _)) => ended = true,
                    None => {}
                    other => prop_assert!(false, "unexpected event {:?}", other),
                }
            }
        }
        prop_assert!(ended);
        prop_assert_eq!(out, data);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000), step in 1usize..64) {
        for decoder in [Decoder::for_request(1), Decoder::multiplexed()] {
            let mut decoder = decoder;
            'outer: for chunk in bytes.chunks(step) {
                let mut input = chunk;
                while !input.is_empty() {
                    match decoder.decode(input) {
                        Ok((used, _)) => {
                            prop_assert!(used <= input.len());
                            prop_assert!(used > 0);
                            input = &input[used..];
                        }
                        Err(_) => break 'outer,
                    }
                }
            }
        }
    }

    #[test]
    fn name_value_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
        for (n, v) in PairIter::new(&bytes).map_while(Result::ok) {
            prop_assert!(n.len() + v.len() <= bytes.len());
        }
    }

    #[test]
    fn a_head_parses_the_same_whole_or_in_pieces(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("Status: 404 Not Found".to_string()),
                Just("Status: 2x".to_string()),
                Just("Location: /x".to_string()),
                Just("no colon".to_string()),
                "[A-Za-z-]{1,8}: [ -~]{0,12}",
            ],
            0..6,
        ),
        crlf in any::<bool>(),
        step in 1usize..40,
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let text: String = lines.iter().map(|l| format!("{l}{eol}")).collect::<String>() + eol + "body";
        let parse = |step: usize| {
            let mut parser = HeadParser::new(1000);
            let mut taken = 0;
            for chunk in text.as_bytes().chunks(step) {
                match parser.push(chunk) {
                    Ok(Some((head, used))) => return Ok((head, taken + used)),
                    Ok(None) => taken += chunk.len(),
                    Err(e) => return Err(e),
                }
            }
            Err(parser.finish())
        };
        let whole = parse(text.len());
        prop_assert_eq!(&whole, &parse(step));
        if let Ok((_, used)) = whole {
            prop_assert_eq!(&text[used..], "body");
        }
    }

    #[test]
    fn head_parser_never_panics_and_stays_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..3000), step in 1usize..100) {
        let mut parser = HeadParser::new(1000);
        for chunk in bytes.chunks(step) {
            match parser.push(chunk) {
                Ok(Some((_, used))) => { prop_assert!(used <= chunk.len()); break; }
                Ok(None) => prop_assert!(parser.buffered() <= 1000),
                Err(_) => break,
            }
        }
    }
}
