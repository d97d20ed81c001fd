//! The plain socket copy the large-body benchmarks compare with.
//!
//! sockcopy recv ADDR          read to EOF with a 64 KiB buffer (the size of
//!                             fcgi's read buffer) against `mini-responder --raw-send N`
//! sockcopy send ADDR FILE     copy FILE to the socket in 64 KiB chunks, then wait
//!                             for the one-byte answer of `mini-responder --raw-sink`

use std::fs::File;
use std::io::{Read, Write};

use fcgi_bench_helpers::{Args, Conn, READ_BUF};

fn main() {
    let args = Args::parse();
    let mut conn = Conn::connect(&args.positional[1]).expect("connect");
    let mut buf = vec![0u8; READ_BUF];
    let mut moved = 0u64;
    match args.positional[0].as_str() {
        "recv" => loop {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            moved += n as u64;
        },
        "send" => {
            let mut file = File::open(&args.positional[2]).expect("file");
            let chunk = 65528;
            loop {
                let n = file.read(&mut buf[..chunk]).expect("read file");
                if n == 0 {
                    break;
                }
                conn.write_all(&buf[..n]).expect("write");
                moved += n as u64;
            }
            conn.shutdown_write().expect("shutdown");
            let mut ack = [0u8; 1];
            conn.read_exact(&mut ack).expect("ack");
        }
        other => panic!("unknown mode {other}"),
    }
    println!("bytes {moved}");
}
