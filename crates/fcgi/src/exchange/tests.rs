//! Bytes-in / events-out tests of the exchange's response side, with no
//! socket: a [`Server`] script writes the records a FastCGI server would
//! send (with `fcgi_proto`'s encoder, padded or not), and [`play`] feeds
//! those bytes to a client-side [`ResponseMachine`] cut at the places a
//! [`Split`] gives (all at once, byte by byte, or pseudo-random cuts from a
//! fixed seed), collecting what the machine hands out. Every test checks
//! that each split gives the same [`Seen`] answer.

use fcgi_proto::decode::EndRequest;
use fcgi_proto::encode::{encode_record, encode_stream};
use fcgi_proto::nv::encode_pair;
use fcgi_proto::record::{Header, ProtocolStatus, RecordType};

use super::{ResponseMachine, Step, ValuesAnswer, SINGLE_REQUEST_ID};
use crate::config::Limits;
use crate::error::{Error, Limit};

const ADDRESS: &str = "unix:/run/php-fpm.sock";

/// The server side: the records of one response, in the order written.
struct Server {
    request_id: u16,
    /// Padding added to every record written from now on.
    padding: u8,
    bytes: Vec<u8>,
    /// Padding of the last END_REQUEST written.
    end_padding: usize,
}

impl Server {
    fn new() -> Server {
        Server::for_request(SINGLE_REQUEST_ID)
    }

    fn for_request(request_id: u16) -> Server {
        Server {
            request_id,
            padding: 0,
            bytes: Vec::new(),
            end_padding: 0,
        }
    }

    /// Pads every following record with `padding` zero bytes.
    fn padded(mut self, padding: u8) -> Server {
        self.padding = padding;
        self
    }

    fn record(mut self, record_type: RecordType, request_id: u16, content: &[u8]) -> Server {
        if self.padding == 0 {
            encode_record(record_type, request_id, content, &mut self.bytes);
        } else {
            let header = Header::new(record_type, request_id, content.len() as u16, self.padding);
            self.bytes.extend_from_slice(&header.to_bytes());
            self.bytes.extend_from_slice(content);
            self.bytes
                .resize(self.bytes.len() + self.padding as usize, 0);
        }
        self
    }

    fn stdout(self, content: &[u8]) -> Server {
        let id = self.request_id;
        self.record(RecordType::Stdout, id, content)
    }

    fn stderr(self, content: &[u8]) -> Server {
        let id = self.request_id;
        self.record(RecordType::Stderr, id, content)
    }

    /// A whole STDOUT stream of any length, cut into records by the
    /// encoder, with its empty closing record.
    fn stdout_stream(mut self, content: &[u8]) -> Server {
        encode_stream(
            RecordType::Stdout,
            self.request_id,
            content,
            true,
            &mut self.bytes,
        );
        self
    }

    fn end_with(mut self, status: ProtocolStatus, app_status: u32) -> Server {
        let mut body = app_status.to_be_bytes().to_vec();
        body.extend_from_slice(&[status.to_u8(), 0, 0, 0]);
        self.end_padding = self.padding as usize;
        let id = self.request_id;
        self.record(RecordType::EndRequest, id, &body)
    }

    fn end(self) -> Server {
        self.end_with(ProtocolStatus::RequestComplete, 0)
    }

    fn get_values_result(self, pairs: &[(&str, &str)]) -> Server {
        let mut content = Vec::new();
        for (name, value) in pairs {
            encode_pair(name.as_bytes(), value.as_bytes(), &mut content);
        }
        self.record(RecordType::GetValuesResult, 0, &content)
    }

    fn unknown_type(self, record_type: u8) -> Server {
        self.record(
            RecordType::UnknownType,
            0,
            &[record_type, 0, 0, 0, 0, 0, 0, 0],
        )
    }

    /// Raw bytes after the response (what a misbehaving server sends).
    fn then_raw(mut self, raw: &[u8]) -> Server {
        self.bytes.extend_from_slice(raw);
        self
    }
}

/// Where the server's bytes are cut into reads.
#[derive(Debug, Clone, Copy)]
enum Split {
    Whole,
    ByteByByte,
    /// Reads of 1 to 16 bytes, from a fixed seed.
    Random(u64),
}

const SPLITS: [Split; 5] = [
    Split::Whole,
    Split::ByteByByte,
    Split::Random(1),
    Split::Random(0x5eed),
    Split::Random(0xfc61),
];

impl Split {
    fn reads(self, bytes: &[u8]) -> Vec<&[u8]> {
        match self {
            Split::Whole => vec![bytes],
            Split::ByteByByte => bytes.chunks(1).collect(),
            Split::Random(seed) => {
                let mut state = seed | 1;
                let mut reads = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    // xorshift64: reproducible, no dependency.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let len = (1 + state % 16).min(rest.len() as u64) as usize;
                    let (read, after) = rest.split_at(len);
                    reads.push(read);
                    rest = after;
                }
                reads
            }
        }
    }
}

/// What the client side made of the server's bytes.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: Option<u16>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// STDERR bytes as the steps showed them (all of them).
    stderr_shown: Vec<u8>,
    /// STDERR kept by the machine (up to the limit), and how much dropped.
    stderr_kept: Vec<u8>,
    stderr_dropped: u64,
    end: Option<EndRequest>,
    /// What was left of the read that carried END_REQUEST.
    rest: Vec<u8>,
    received: u64,
}

/// Feeds the reads to `machine` as a transport does, stopping at
/// END_REQUEST (what remains of that read is [`Seen::rest`]).
fn feed_reads(machine: &mut ResponseMachine, reads: &[&[u8]]) -> Result<Seen, Error> {
    let mut seen = Seen {
        status: None,
        headers: Vec::new(),
        body: Vec::new(),
        stderr_shown: Vec::new(),
        stderr_kept: Vec::new(),
        stderr_dropped: 0,
        end: None,
        rest: Vec::new(),
        received: 0,
    };
    'reads: for read in reads {
        let mut input = *read;
        while !input.is_empty() {
            let (used, step) = machine.feed(input)?;
            match step {
                Step::Nothing => {}
                Step::Head(body) => {
                    let head = machine.take_head().expect("the head after Step::Head");
                    assert!(machine.take_head().is_none(), "the head is taken once");
                    seen.status = Some(head.status);
                    seen.headers = head
                        .headers
                        .iter()
                        .map(|(name, value)| (name.to_string(), value.to_vec()))
                        .collect();
                    seen.body.extend_from_slice(&input[body]);
                }
                Step::Body(body) => seen.body.extend_from_slice(&input[body]),
                Step::Stderr(bytes) => seen.stderr_shown.extend_from_slice(&input[bytes]),
                Step::End(end) => {
                    seen.end = Some(end);
                    seen.rest = input[used..].to_vec();
                    break 'reads;
                }
            }
            input = &input[used..];
        }
    }
    seen.stderr_kept = machine.stderr.clone();
    seen.stderr_dropped = machine.stderr_dropped;
    seen.received = machine.received();
    Ok(seen)
}

/// Plays the server's bytes to a fresh machine in every split; asserts the
/// splits agree (but for what remains of the read that carried END_REQUEST)
/// and returns the answer of one whole read.
fn play(server: &Server, limits: Limits) -> Result<Seen, Error> {
    let run = |split: Split| {
        let mut machine = ResponseMachine::new(server.request_id, limits, ADDRESS);
        feed_reads(&mut machine, &split.reads(&server.bytes))
    };
    let whole = run(Split::Whole);
    let without_rest = |seen: &Result<Seen, Error>| match seen {
        Ok(seen) => Ok(Seen {
            rest: Vec::new(),
            ..seen.clone()
        }),
        Err(error) => Err(error.to_string()),
    };
    for split in &SPLITS[1..] {
        assert_eq!(
            without_rest(&run(*split)),
            without_rest(&whole),
            "{split:?} differs from one whole read"
        );
    }
    whole
}

fn header(name: &str, value: &str) -> (String, Vec<u8>) {
    (name.to_string(), value.as_bytes().to_vec())
}

#[test]
fn head_body_and_stderr_come_out_exact_in_every_split() {
    let server = Server::new()
        .stderr(b"PHP Notice: x")
        .stdout(b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n")
        .stdout(b"X-A: 2\r\n\r\nhel")
        .stderr(b" and y")
        .stdout(b"lo")
        .stdout(b"")
        .end_with(ProtocolStatus::RequestComplete, 7);
    let seen = play(&server, Limits::default()).unwrap();
    assert_eq!(seen.status, Some(201));
    assert_eq!(
        seen.headers,
        [
            header("Content-Type", "text/plain"),
            header("X-A", "1"),
            header("X-A", "2")
        ]
    );
    assert_eq!(seen.body, b"hello");
    assert_eq!(seen.stderr_shown, b"PHP Notice: x and y");
    assert_eq!(seen.stderr_kept, b"PHP Notice: x and y");
    assert_eq!(seen.stderr_dropped, 0);
    assert_eq!(
        seen.end,
        Some(EndRequest {
            app_status: 7,
            protocol_status: ProtocolStatus::RequestComplete
        })
    );
    assert_eq!(seen.received, server.bytes.len() as u64);
    assert!(seen.rest.is_empty());
}

#[test]
fn padding_and_management_records_do_not_reach_the_response() {
    let server = Server::new()
        .padded(5)
        .stdout(b"Status: 200 OK\r\n\r\n")
        .get_values_result(&[("FCGI_MPXS_CONNS", "0")])
        .stdout(b"body")
        .unknown_type(99)
        .stderr(b"e")
        .padded(0)
        .stdout(b"!")
        .end();
    let seen = play(&server, Limits::default()).unwrap();
    assert_eq!(seen.status, Some(200));
    assert_eq!(seen.body, b"body!");
    assert_eq!(seen.stderr_kept, b"e");
}

#[test]
fn a_body_of_many_records_comes_out_whole() {
    let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let mut content = b"Content-Type: application/octet-stream\r\n\r\n".to_vec();
    content.extend_from_slice(&body);
    let server = Server::new().stdout_stream(&content).end();
    let seen = play(&server, Limits::default()).unwrap();
    assert_eq!(seen.status, Some(200));
    assert_eq!(seen.body, body);
}

#[test]
fn the_head_limit_is_an_error_in_every_split() {
    let limits = Limits {
        max_head_bytes: 32,
        ..Limits::default()
    };
    let within = Server::new().stdout(b"X-Long: 1234567\r\n\r\nbody").end();
    assert_eq!(play(&within, limits).unwrap().body, b"body");
    let over = Server::new()
        .stdout(b"X-Long: 12345678901234567890123456789\r\n\r\n")
        .end();
    assert!(matches!(
        play(&over, limits),
        Err(Error::LimitExceeded {
            limit: Limit::HeadBytes,
            max: 32
        })
    ));
}

#[test]
fn stderr_past_its_limit_is_shown_counted_but_not_kept() {
    let limits = Limits {
        max_stderr_bytes: 4,
        ..Limits::default()
    };
    let server = Server::new()
        .stderr(b"abc")
        .stderr(b"defgh")
        .stdout(b"\r\n")
        .stderr(b"ij")
        .end();
    let seen = play(&server, limits).unwrap();
    assert_eq!(seen.stderr_shown, b"abcdefghij");
    assert_eq!(seen.stderr_kept, b"abcd");
    assert_eq!(seen.stderr_dropped, 6);
}

#[test]
fn an_end_before_the_head_is_complete_is_a_protocol_error() {
    let server = Server::new().stdout(b"Content-Type: text/plain\r\n").end();
    assert!(matches!(
        play(&server, Limits::default()),
        Err(Error::Protocol { .. })
    ));
}

#[test]
fn a_record_for_another_request_id_is_a_protocol_error() {
    let server = Server::new()
        .stdout(b"\r\n")
        .record(RecordType::Stdout, 2, b"not mine")
        .end();
    match play(&server, Limits::default()) {
        Err(Error::Protocol { address, detail }) => {
            assert_eq!(address, ADDRESS);
            assert!(detail.contains("request id 2, expected 1"), "{detail}");
        }
        other => panic!("not a protocol error: {other:?}"),
    }
    // A multiplexed connection's request has its own id.
    let server = Server::for_request(9).stdout(b"\r\nok").end();
    assert_eq!(play(&server, Limits::default()).unwrap().body, b"ok");
}

#[test]
fn each_protocol_status_but_complete_rejects_the_request() {
    for status in [
        ProtocolStatus::CantMpxConn,
        ProtocolStatus::Overloaded,
        ProtocolStatus::UnknownRole,
        ProtocolStatus::Other(200),
    ] {
        let server = Server::new().stdout(b"\r\n").end_with(status, 0);
        match play(&server, Limits::default()) {
            Err(Error::Rejected {
                status: rejected, ..
            }) => assert_eq!(rejected, status),
            other => panic!("{status:?}: not rejected: {other:?}"),
        }
    }
    // The server may reject before any output.
    let server = Server::new().end_with(ProtocolStatus::Overloaded, 0);
    assert!(matches!(
        play(&server, Limits::default()),
        Err(Error::Rejected { .. })
    ));
}

/// Plays `server` in one read, then asks whether the connection is kept.
fn reusable(server: &Server, request_sent: bool, keep_alive: bool) -> bool {
    let mut machine = ResponseMachine::new(server.request_id, Limits::default(), ADDRESS);
    let seen = feed_reads(&mut machine, &[&server.bytes]).unwrap();
    assert!(seen.end.is_some());
    machine.reusable(&seen.rest, request_sent, keep_alive)
}

#[test]
fn the_connection_is_kept_only_after_a_clean_end() {
    let clean = Server::new().stdout(b"\r\nok").end();
    assert!(reusable(&clean, true, true));
    assert!(!reusable(&clean, true, false), "keep-alive off");
    assert!(!reusable(&clean, false, true), "the body was not all sent");
    // A padded END_REQUEST whose padding came in the same read.
    let padded = Server::new().padded(3).stdout(b"\r\nok").end();
    assert_eq!(padded.end_padding, 3);
    assert!(reusable(&padded, true, true));
    // A byte past the end (a stray record starting) closes it.
    let stray = Server::new().stdout(b"\r\nok").end().then_raw(&[1]);
    assert!(!reusable(&stray, true, true));
    let stray_record = Server::new().stdout(b"\r\n").end().stdout(b"late");
    assert!(!reusable(&stray_record, true, true));
}

#[test]
fn padding_still_to_come_after_the_end_closes_the_connection() {
    let padded = Server::new().padded(6).stdout(b"\r\n").end();
    let cut = padded.bytes.len() - 2;
    let mut machine = ResponseMachine::new(SINGLE_REQUEST_ID, Limits::default(), ADDRESS);
    let seen = feed_reads(&mut machine, &[&padded.bytes[..cut]]).unwrap();
    assert!(seen.end.is_some());
    assert_eq!(seen.rest.len(), 4);
    assert!(!machine.reusable(&seen.rest, true, true));
}

#[test]
fn a_restarted_machine_answers_the_next_request_on_the_connection() {
    let mut machine = ResponseMachine::new(SINGLE_REQUEST_ID, Limits::default(), ADDRESS);
    let first = Server::new().stderr(b"warn").stdout(b"\r\none").end();
    let seen = feed_reads(&mut machine, &[&first.bytes]).unwrap();
    assert_eq!(seen.body, b"one");
    assert!(machine.reusable(&seen.rest, true, true));
    machine.restart(2);
    let second = Server::for_request(2)
        .stdout(b"Status: 404 Not Found\r\n\r\ntwo")
        .end();
    let seen = feed_reads(&mut machine, &[&second.bytes]).unwrap();
    assert_eq!(seen.status, Some(404));
    assert_eq!(seen.body, b"two");
    assert!(seen.stderr_kept.is_empty(), "stderr of the first is gone");
    // Records of the request just before are strays now: skipped whole
    // (they never reach request 3's response); older ids are refused.
    machine.restart(3);
    let strays = feed_reads(&mut machine, &[&second.bytes]).unwrap();
    assert_eq!((strays.status, strays.end), (None, None));
    assert!(strays.body.is_empty() && strays.stderr_kept.is_empty());
    let third = Server::for_request(3).stdout(b"\r\nthree").end();
    let seen = feed_reads(&mut machine, &[&third.bytes]).unwrap();
    assert_eq!(seen.body, b"three");
    assert!(
        !machine.reusable(&seen.rest, true, true),
        "a connection with strays is not reused"
    );
    machine.restart(4);
    assert!(feed_reads(&mut machine, &[&first.bytes]).is_err());
}

#[test]
fn get_values_answers_arrive_in_every_split() {
    let answer =
        Server::new().get_values_result(&[("FCGI_MAX_CONNS", "8"), ("FCGI_MPXS_CONNS", "1")]);
    for split in SPLITS {
        let mut values = ValuesAnswer::ask(&["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"], &mut Vec::new());
        let mut got = None;
        for read in split.reads(&answer.bytes) {
            assert!(got.is_none(), "{split:?}: answered before the record ended");
            got = values.feed(read, ADDRESS).unwrap();
        }
        assert_eq!(
            got,
            Some(vec![
                ("FCGI_MAX_CONNS".to_string(), "8".to_string()),
                ("FCGI_MPXS_CONNS".to_string(), "1".to_string())
            ]),
            "{split:?}"
        );
    }
}

#[test]
fn get_values_refuses_unknown_type_and_response_records() {
    let unknown = Server::new().unknown_type(9);
    let response = Server::new().stdout(b"x");
    for (server, detail) in [
        (unknown, "does not understand management record type 9"),
        (response, "response record on a management request"),
    ] {
        let mut values = ValuesAnswer::ask(&["FCGI_MAX_CONNS"], &mut Vec::new());
        match values.feed(&server.bytes, ADDRESS) {
            Err(Error::Protocol { detail: got, .. }) => assert!(got.contains(detail), "{got}"),
            other => panic!("not refused: {other:?}"),
        }
    }
}
