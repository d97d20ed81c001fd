//! Name-value decoding of arbitrary bytes, then a differential check: the
//! pairs it found, encoded again and decoded again, are the same pairs.
#![no_main]

use fcgi_proto::nv::{encode_pair, PairIter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let pairs: Vec<(&[u8], &[u8])> = PairIter::new(bytes).map_while(Result::ok).collect();
    let mut encoded = Vec::new();
    for (name, value) in &pairs {
        assert!(name.len() + value.len() <= bytes.len());
        encode_pair(name, value, &mut encoded);
    }
    let again: Vec<(&[u8], &[u8])> = PairIter::new(&encoded)
        .collect::<Result<_, _>>()
        .expect("re-encoded pairs decode");
    assert_eq!(again, pairs);
});
