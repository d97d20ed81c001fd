//! The CGI head parser alone: arbitrary bytes in arbitrary slices. Memory
//! stays within the limit, a completed head reports what it took, and the
//! status is always a plausible HTTP code.
#![no_main]

use fcgi_proto::head::HeadParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u16, &[u8])| {
    let (step, limit, bytes) = input;
    let step = usize::from(step).max(1);
    let limit = usize::from(limit).max(1);
    let mut parser = HeadParser::new(limit);
    for chunk in bytes.chunks(step) {
        match parser.push(chunk) {
            Ok(Some((head, taken))) => {
                assert!(taken <= chunk.len());
                assert!((100..=999).contains(&head.status));
                return;
            }
            Ok(None) => assert!(parser.buffered() <= limit),
            Err(_) => return,
        }
    }
});
