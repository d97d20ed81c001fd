//! The response decoder and the CGI head parser together, as a transport
//! drives them: arbitrary server bytes, cut into arbitrary slices. Nothing may
//! panic, every call must make progress, and no slice may be out of bounds.
#![no_main]

use fcgi_proto::decode::{Decoder, Event};
use fcgi_proto::head::HeadParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, bool, &[u8])| {
    let (step, multiplexed, bytes) = input;
    let step = usize::from(step).max(1);
    let mut decoder = if multiplexed { Decoder::multiplexed() } else { Decoder::for_request(1) };
    let mut head = Some(HeadParser::new(1024));
    for chunk in bytes.chunks(step) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let Ok((used, event)) = decoder.decode(rest) else { return };
            assert!(used > 0 && used <= rest.len());
            if let Some(Event::Stdout(_, data)) = &event {
                assert!(data.len() <= used);
                if let Some(parser) = head.as_mut() {
                    match parser.push(data) {
                        Ok(Some((_, taken))) => {
                            assert!(taken <= data.len());
                            head = None;
                        }
                        Ok(None) => assert!(parser.buffered() <= 1024),
                        Err(_) => return,
                    }
                }
            }
            rest = &rest[used..];
        }
    }
});
