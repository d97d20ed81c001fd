//! The access log: one line per request on standard error, written when
//! the response body is done (or abandoned), in nginx's `combined` format
//! plus the duration:
//!
//! ```text
//! 127.0.0.1 - - [25/Nov/2025:22:45:00 +0000] "GET /index.php?x=1 HTTP/1.1" 200 13 "-" "curl/7.88.1" 1.234ms
//! ```

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use http::header::{REFERER, USER_AGENT};
use http::{Request, Response};

/// What the line says about the request.
pub struct Entry {
    peer: String,
    request_line: String,
    referer: String,
    user_agent: String,
}

/// A header value for the log: `-` when absent, quotes and control
/// characters escaped.
fn field(value: Option<&http::HeaderValue>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) => escape(&String::from_utf8_lossy(v.as_bytes())),
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => format!("\\x{:02X}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

impl Entry {
    pub fn new<B>(request: &Request<B>, peer: Option<SocketAddr>) -> Entry {
        let uri = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        Entry {
            peer: peer.map_or("-".into(), |p| p.ip().to_canonical().to_string()),
            request_line: escape(&format!(
                "{} {} {:?}",
                request.method(),
                uri,
                request.version()
            )),
            referer: field(request.headers().get(REFERER)),
            user_agent: field(request.headers().get(USER_AGENT)),
        }
    }

    /// The line to write once `response`'s body is done ([`Pending`]).
    pub fn pending<B>(self, response: &Response<B>, started: Instant) -> Pending {
        Pending {
            entry: self,
            status: response.status().as_u16(),
            bytes: 0,
            started,
        }
    }
}

/// A line waiting for its response body to end: the body counts the bytes
/// it sends ([`Pending::sent`]), then writes the line ([`Pending::write`])
/// when it is done or dropped.
pub struct Pending {
    entry: Entry,
    status: u16,
    bytes: u64,
    started: Instant,
}

impl Pending {
    /// `n` more bytes of the body went out.
    pub fn sent(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// Writes the line to standard error.
    pub fn write(self) {
        let date = log_date(SystemTime::now());
        let entry = self.entry;
        eprintln!(
            "{} - - [{date}] \"{}\" {} {} \"{}\" \"{}\" {:.3}ms",
            entry.peer,
            entry.request_line,
            self.status,
            self.bytes,
            entry.referer,
            entry.user_agent,
            self.started.elapsed().as_secs_f64() * 1e3
        );
    }
}

/// `25/Nov/2025:22:45:00 +0000` from the HTTP date (always GMT).
fn log_date(now: SystemTime) -> String {
    // "Tue, 25 Nov 2025 22:45:00 GMT"
    let http = httpdate::fmt_http_date(now);
    let parts: Vec<&str> = http.split(' ').collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year}:{time} +0000"),
        _ => http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_in_common_log_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_110_700);
        assert_eq!(log_date(t), "25/Nov/2025:22:45:00 +0000");
    }

    #[test]
    fn quotes_and_control_characters_are_escaped() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\x0A");
    }
}
