//! Backpressure, measured: a large php-fpm response read slowly through the
//! async client keeps the process's resident memory flat. Alone in its own
//! test binary so that no other test's memory use disturbs the measurement.
#![cfg(feature = "tokio")]

use std::time::{Duration, Instant};

use fcgi::nonblocking::{Chunk, Client};
use fcgi::Request;
use fcgi_testkit::{pattern, PhpFpm};

/// Resident set size of this process in bytes.
fn rss_bytes() -> u64 {
    fcgi_testkit::usage::rss_kb() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_read_slowly_keeps_memory_flat() {
    const TOTAL: usize = 1024 * 1024 * 1024;
    const LIMIT: u64 = 32 * 1024 * 1024;
    let fpm = PhpFpm::start();
    let client = Client::new(fpm.unix_address().as_str()).unwrap();
    let url = format!("{}?bytes={TOTAL}", fpm.script("output.php").display());
    // Warm up: pool, runtime threads, allocator arenas.
    client
        .execute(Request::get(&url.replace(&TOTAL.to_string(), "100000")))
        .await
        .unwrap();
    let before = rss_bytes();
    let started = Instant::now();

    // The pattern repeats every 251 bytes: compare each chunk with a slice.
    let cycle = pattern(251 + 70_000);
    let mut stream = client.stream(Request::get(&url)).await.unwrap();
    assert_eq!(stream.status(), 200);
    let (mut received, mut chunks, mut peak) = (0usize, 0u64, before);
    while let Some(chunk) = stream.next_chunk().await.unwrap() {
        let Chunk::Body(bytes) = chunk else { continue };
        let start = received % 251;
        assert!(
            bytes[..] == cycle[start..start + bytes.len()],
            "wrong bytes at offset {received}"
        );
        let mib_before = received >> 20;
        received += bytes.len();
        chunks += 1;
        // A slow reader: a pause per MiB makes it several times slower than
        // php-fpm writes (about 0.5 GB/s here), so php-fpm has to wait.
        if received >> 20 != mib_before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if chunks % 64 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    let trailer = stream.finish().await.unwrap();
    assert!(trailer.stderr.is_empty());
    assert_eq!(received, TOTAL);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "{} MB in {:?}; RSS before {} MB, peak {} MB, growth {} KB",
        TOTAL >> 20,
        started.elapsed(),
        before >> 20,
        peak >> 20,
        growth >> 10
    );
    assert!(
        growth < LIMIT,
        "RSS grew by {} MB while streaming",
        growth >> 20
    );
}
