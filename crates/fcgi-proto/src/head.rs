//! The CGI response head: the header block at the start of STDOUT.
//!
//! [`HeadParser`] is fed STDOUT chunks as they arrive, across record
//! boundaries, and finds the blank line that ends the head (CRLF or bare LF
//! line endings, mixed too). Memory stays bounded by the head size limit.
//!
//! Status rules (RFC 3875 as php-fpm uses them): `Status: 404 Not Found` gives
//! 404 "Not Found"; a `Location` without `Status` gives 302 "Found"; otherwise
//! 200 "OK". The `Status` line itself is not kept among the headers. All other
//! headers keep their order, their case and every repetition.
//!
//! ```
//! use fcgi_proto::head::HeadParser;
//! let mut parser = HeadParser::new(64 * 1024);
//! assert!(parser.push(b"Status: 404 Not Found\nSet-Cookie: a=1\n").unwrap().is_none());
//! let (head, used) = parser.push(b"Set-Cookie: b=2\n\nbody").unwrap().unwrap();
//! assert_eq!((head.status, &*head.reason), (404, "Not Found"));
//! assert_eq!(head.headers.get_all("set-cookie").collect::<Vec<_>>(), [&b"a=1"[..], b"b=2"]);
//! assert_eq!(used, 17); // "body" starts after the 17 bytes of this chunk
//! ```

use std::borrow::Cow;

/// Default limit on the size of a response head: 64 KiB.
pub const DEFAULT_MAX_HEAD_LEN: usize = 64 * 1024;

/// A malformed or oversized response head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// No blank line within the limit.
    #[error("response head exceeds the limit of {limit} bytes without ending (raise max_head_bytes if this is legitimate)")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// STDOUT ended before the blank line that ends the head.
    #[error("response ended inside the CGI header block after {received} bytes (no blank line)")]
    Incomplete {
        /// Bytes of head received.
        received: usize,
    },
    /// A header line without a colon or with an invalid name.
    #[error("malformed response header line {line}: {text:?}")]
    BadLine {
        /// 1-based line number in the head.
        line: usize,
        /// The line, lossily decoded and cut to 80 characters.
        text: String,
    },
    /// A `Status` header that is not a three-digit code.
    #[error("malformed Status header: {0:?} (expected e.g. \"404 Not Found\")")]
    BadStatus(String),
}

/// Response headers in arrival order, repetitions kept. Names keep their
/// case; lookups ignore it.
///
/// Stored compactly: every header as its two lengths, its name and its
/// value, back to back in one buffer, so a parsed head costs one allocation
/// however many headers it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// (name length, value length, name, value) per header, in order.
    bytes: Vec<u8>,
    count: usize,
}

/// Bytes of one length in [`Headers`]' buffer.
const LEN_BYTES: usize = std::mem::size_of::<usize>();

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// No headers, with room for `bytes` bytes of names and values.
    fn with_capacity(bytes: usize) -> Headers {
        Headers {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends a header, keeping any earlier one of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        let (name, value) = (name.into(), value.into());
        self.push(&name, &value);
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        self.push_raw(name.as_bytes(), value);
    }

    /// [`Headers::push`] for a name already known to be UTF-8 (the parser's
    /// names are ASCII token bytes).
    fn push_raw(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(&name.len().to_ne_bytes());
        self.bytes.extend_from_slice(&value.len().to_ne_bytes());
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.count += 1;
    }

    /// Every header as (name bytes, value bytes), in order.
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest = &self.bytes[..];
        std::iter::from_fn(move || {
            let (name_len, tail) = take_len(rest)?;
            let (value_len, tail) = take_len(tail)?;
            let name = tail.get(..name_len)?;
            let value = tail.get(name_len..name_len.checked_add(value_len)?)?;
            rest = &tail[name_len + value_len..];
            Some((name, value))
        })
    }

    /// The first value of `name` (any case) as text, or `None` when absent or
    /// not UTF-8 (see [`Headers::get_bytes`]).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` (any case) as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every value of `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// True when `name` (any case) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name).is_some()
    }

    /// All headers as (name, value) in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names went in as text, so they always come out as text.
        self.fields()
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or_default(), v))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One length of [`Headers`]' buffer and the bytes after it.
fn take_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let len = bytes.get(..LEN_BYTES)?.try_into().ok()?;
    Some((usize::from_ne_bytes(len), &bytes[LEN_BYTES..]))
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// HTTP status code.
    pub status: u16,
    /// Reason phrase: the one given in `Status`, else the standard one.
    /// Standard phrases are borrowed, so most heads cost no allocation here.
    pub reason: Cow<'static, str>,
    /// Every header but `Status`, in order.
    pub headers: Headers,
}

/// Incremental parser of the response head. See the module docs.
#[derive(Debug, Clone)]
pub struct HeadParser {
    buf: Vec<u8>,
    limit: usize,
    /// Start of the line being read.
    line_start: usize,
    /// How far the buffer has been searched for newlines.
    scanned: usize,
}

impl HeadParser {
    /// A parser that refuses heads longer than `limit` bytes.
    pub fn new(limit: usize) -> HeadParser {
        HeadParser {
            buf: Vec::new(),
            limit,
            line_start: 0,
            scanned: 0,
        }
    }

    /// Bytes buffered so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next STDOUT bytes. Returns the head and how many bytes of
    /// `input` it took, once the blank line has arrived; the rest of `input`
    /// is body.
    pub fn push(&mut self, input: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
        let before = self.buf.len();
        let room = self.limit.saturating_sub(before);
        let take = input.len().min(room);
        if before == 0 {
            // The usual case: the whole head in the first chunk. It is parsed
            // where it lies, in one pass, without copying it into the buffer.
            match parse_whole(&input[..take]) {
                Whole::Parsed(head, used) => return Ok(Some((head, used))),
                // The lines before `line_start` hold no blank one: buffer
                // the chunk and go on from there.
                Whole::Incomplete { line_start } => {
                    self.buf.extend_from_slice(&input[..take]);
                    self.line_start = line_start;
                    return self.check_room(take < input.len());
                }
                // A line to complain about: the long way gives the error.
                Whole::Malformed => {
                    if let Some((block_len, used)) = find_blank_line(&input[..take]) {
                        return Ok(Some((parse_head(&input[..block_len])?, used)));
                    }
                }
            }
        }
        self.buf.extend_from_slice(&input[..take]);
        // Bytes before `scanned` hold no terminator; scan only the new ones.
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let nl = self.scanned + nl;
            let line = &self.buf[self.line_start..nl];
            if line.is_empty() || line == b"\r" {
                let head = parse_head(&self.buf[..self.line_start])?;
                let used = nl + 1 - before;
                *self = HeadParser::new(self.limit);
                return Ok(Some((head, used)));
            }
            self.line_start = nl + 1;
            self.scanned = nl + 1;
        }
        self.check_room(take < input.len())
    }

    /// After a chunk without the blank line: the head so far is all
    /// scanned; it is too large if it reached the limit or some input did
    /// not fit (`cut`).
    fn check_room(&mut self, cut: bool) -> Result<Option<(Head, usize)>, HeadError> {
        self.scanned = self.buf.len();
        if cut || self.buf.len() >= self.limit {
            return Err(HeadError::TooLarge { limit: self.limit });
        }
        Ok(None)
    }

    /// Called when STDOUT ended before the head did.
    pub fn finish(&self) -> HeadError {
        HeadError::Incomplete {
            received: self.buf.len(),
        }
    }
}

/// Where the blank line that ends a head lies in `bytes`, which start a head:
/// the length of the header block before it and the length up to and
/// including it.
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        let line = &bytes[line_start..nl];
        if line.is_empty() || line == b"\r" {
            return Some((line_start, nl + 1));
        }
        line_start = nl + 1;
    }
    None
}

/// Room for the names and values of the first head parsed in one pass
/// (most heads fit; larger ones grow the buffer).
const ONE_PASS_CAPACITY: usize = 256;

/// What [`parse_whole`] found.
enum Whole {
    /// The head, and the bytes of input up to and including its blank line.
    Parsed(Head, usize),
    /// No blank line yet; every line before `line_start` is well-formed.
    Incomplete { line_start: usize },
    /// A malformed line: [`parse_head`] gives the error once the head is
    /// complete.
    Malformed,
}

/// The usual case in one pass: a head at the start of `input`, each line
/// checked as it is found.
fn parse_whole(input: &[u8]) -> Whole {
    let mut fields = Fields::with_capacity(input.len().min(ONE_PASS_CAPACITY));
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'\n', &input[at..]) {
        let end = at + found;
        let raw = &input[at..end];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        at = end + 1;
        if line.is_empty() {
            return Whole::Parsed(fields.into_head(), at);
        }
        let added = split_field(line).map(|(name, value)| fields.add(name, value));
        if !matches!(added, Some(Ok(()))) {
            return Whole::Malformed;
        }
    }
    Whole::Incomplete { line_start: at }
}

fn parse_head(block: &[u8]) -> Result<Head, HeadError> {
    // Room for the names, the values and the lengths of a few headers (more
    // grow the buffer), without counting the lines first.
    let mut fields = Fields::with_capacity(block.len() + 8 * 2 * LEN_BYTES);
    for (index, raw) in lines(block).filter(|l| !l.is_empty()).enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (name, value) = split_field(line).ok_or_else(|| HeadError::BadLine {
            line: index + 1,
            text: String::from_utf8_lossy(line).chars().take(80).collect(),
        })?;
        fields.add(name, value)?;
    }
    Ok(fields.into_head())
}

/// A header line's name and trimmed value; `None` when the line is not
/// `token ":" value`.
fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    // The name is token bytes up to the colon: the first byte that is not a
    // token byte must be that colon, and not the first byte.
    let colon = line.iter().position(|&b| !is_token_byte(b))?;
    if colon == 0 || line[colon] != b':' {
        return None;
    }
    Some((&line[..colon], trim(&line[colon + 1..])))
}

/// The head being collected, field by field.
struct Fields {
    headers: Headers,
    status: Option<(u16, Cow<'static, str>)>,
    location: bool,
}

impl Fields {
    fn with_capacity(bytes: usize) -> Fields {
        Fields {
            headers: Headers::with_capacity(bytes),
            status: None,
            location: false,
        }
    }

    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), HeadError> {
        // Token bytes are ASCII: the name is stored as it is.
        if name.eq_ignore_ascii_case(b"status") {
            self.status = Some(parse_status(value)?);
        } else {
            self.location |= name.eq_ignore_ascii_case(b"location");
            self.headers.push_raw(name, value);
        }
        Ok(())
    }

    fn into_head(self) -> Head {
        let (status, reason) = match self.status {
            Some(s) => s,
            None if self.location => (302, Cow::Borrowed(canonical_reason(302))),
            None => (200, Cow::Borrowed(canonical_reason(200))),
        };
        Head {
            status,
            reason,
            headers: self.headers,
        }
    }
}

/// The lines of `block`, split at LF (a CR before it stays with the line).
fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', block)
        .chain(std::iter::once(block.len()))
        .map(move |end| {
            let line = &block[start..end];
            start = end + 1;
            line
        })
}

fn parse_status(value: &[u8]) -> Result<(u16, Cow<'static, str>), HeadError> {
    let text = String::from_utf8_lossy(value);
    let bad = || HeadError::BadStatus(text.chars().take(80).collect());
    let (code, reason) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (&text[..], ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let code: u16 = code.parse().map_err(|_| bad())?;
    if code < 100 {
        return Err(bad());
    }
    let standard = canonical_reason(code);
    let reason = if reason.is_empty() || reason == standard {
        Cow::Borrowed(standard)
    } else {
        Cow::Owned(reason.to_string())
    };
    Ok((code, reason))
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// The bytes of an HTTP token (RFC 9110 `tchar`), as a lookup table.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// The standard reason phrase of a status code, or "" for codes without one.
pub fn canonical_reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8], step: usize) -> Result<(Head, Vec<u8>), HeadError> {
        let mut parser = HeadParser::new(DEFAULT_MAX_HEAD_LEN);
        for (i, chunk) in bytes.chunks(step).enumerate() {
            if let Some((head, used)) = parser.push(chunk)? {
                let mut body = chunk[used..].to_vec();
                body.extend(bytes.chunks(step).skip(i + 1).flatten());
                return Ok((head, body));
            }
        }
        Err(parser.finish())
    }

    #[test]
    fn status_header_gives_code_and_reason() {
        for step in [1, 2, 3, 5, 100] {
            let (head, body) = parse_all(
                b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.",
                step,
            )
            .unwrap();
            assert_eq!(head.status, 404);
            assert_eq!(head.reason, "Not Found");
            assert_eq!(head.headers.get("content-type"), Some("text/html"));
            assert!(!head.headers.contains("status"));
            assert_eq!(body, b"File not found.");
        }
    }

    #[test]
    fn a_head_in_one_chunk_parses_as_one_fed_byte_by_byte() {
        let bytes = b"Status: 201\r\nX-A: 1\nSet-Cookie: c=d\r\n\r\nbody";
        assert_eq!(
            parse_all(bytes, bytes.len()).unwrap(),
            parse_all(bytes, 1).unwrap()
        );
        // The limit applies to a head parsed in place too.
        let mut parser = HeadParser::new(10);
        assert_eq!(
            parser.push(bytes).unwrap_err(),
            HeadError::TooLarge { limit: 10 }
        );
    }

    #[test]
    fn headers_keep_empty_and_binary_values_in_order() {
        let mut headers = Headers::new();
        headers.append("X-Empty", "");
        headers.append("X-Bin", vec![0xff, 0, b'a']);
        headers.append("x-empty", "again");
        assert_eq!(headers.len(), 3);
        assert_eq!(headers.get("x-EMPTY"), Some(""));
        assert_eq!(headers.get("x-bin"), None);
        assert_eq!(headers.get_bytes("x-bin"), Some(&[0xff, 0, b'a'][..]));
        assert_eq!(
            headers.get_all("X-EMPTY").collect::<Vec<_>>(),
            [&b""[..], b"again"]
        );
        let names: Vec<&str> = headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["X-Empty", "X-Bin", "x-empty"]);
        assert_eq!(headers.clone(), headers);
        assert!(!headers.contains("X-Missing"));
    }

    #[test]
    fn lf_only_head_is_accepted() {
        let (head, body) = parse_all(b"X-A: 1\nX-B: 2\n\nrest\n", 1).unwrap();
        assert_eq!(head.headers.len(), 2);
        assert_eq!(body, b"rest\n");
    }

    #[test]
    fn bare_location_means_302() {
        let (head, _) = parse_all(b"Location: /elsewhere\r\n\r\n", 4).unwrap();
        assert_eq!((head.status, &*head.reason), (302, "Found"));
    }

    #[test]
    fn no_status_means_200_ok() {
        let (head, _) = parse_all(b"Content-Type: text/plain\r\n\r\n", 4).unwrap();
        assert_eq!((head.status, &*head.reason), (200, "OK"));
    }

    #[test]
    fn standard_reasons_are_borrowed_and_others_kept_as_sent() {
        for (head, reason, borrowed) in [
            (&b"X: 1\r\n\r\n"[..], "OK", true),
            (b"Status: 404 Not Found\r\n\r\n", "Not Found", true),
            (b"Status: 503\r\n\r\n", "Service Unavailable", true),
            (b"Status: 404 Nowhere\r\n\r\n", "Nowhere", false),
            (b"Status: 299\r\n\r\n", "", true),
        ] {
            let (head, _) = parse_all(head, 100).unwrap();
            assert_eq!(&*head.reason, reason);
            assert_eq!(
                matches!(head.reason, Cow::Borrowed(_)),
                borrowed,
                "{reason}"
            );
        }
    }

    #[test]
    fn status_without_reason_gets_the_standard_one() {
        let (head, _) = parse_all(b"Status: 503\r\n\r\n", 4).unwrap();
        assert_eq!((head.status, &*head.reason), (503, "Service Unavailable"));
    }

    #[test]
    fn repeated_headers_keep_order_case_and_count() {
        let (head, _) =
            parse_all(b"Set-Cookie: a=1\r\nX-Y: z\r\nset-cookie: b=2\r\n\r\n", 1).unwrap();
        let all: Vec<_> = head.headers.iter().collect();
        assert_eq!(
            all,
            [
                ("Set-Cookie", &b"a=1"[..]),
                ("X-Y", b"z"),
                ("set-cookie", b"b=2")
            ]
        );
    }

    #[test]
    fn empty_head_is_allowed() {
        let (head, body) = parse_all(b"\r\nbody", 1).unwrap();
        assert!(head.headers.is_empty());
        assert_eq!(body, b"body");
    }

    #[test]
    fn endless_head_hits_the_limit_with_bounded_memory() {
        let mut parser = HeadParser::new(1024);
        let chunk = [b'a'; 100];
        let mut result = Ok(None);
        for _ in 0..100 {
            result = parser.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.unwrap_err(), HeadError::TooLarge { limit: 1024 });
        assert!(parser.buffered() <= 1024);
    }

    #[test]
    fn head_ending_exactly_at_the_limit_is_accepted() {
        let head = b"X: 1234\r\n\r\n";
        let mut parser = HeadParser::new(head.len());
        assert!(parser.push(head).unwrap().is_some());
    }

    #[test]
    fn malformed_lines_and_statuses_are_errors() {
        assert!(matches!(
            parse_all(b"no colon here\r\n\r\n", 50),
            Err(HeadError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            parse_all(b"X: 1\r\n folded\r\n\r\n", 50),
            Err(HeadError::BadLine { line: 2, .. })
        ));
        // An empty name, a name with a space or other non-token byte, and a
        // line whose only colon follows a bad byte.
        for bad in [
            &b": v\r\n\r\n"[..],
            b"Bad Name: v\r\n\r\n",
            b"X(1): v\r\n\r\n",
            b"Name\t: v\r\n\r\n",
        ] {
            assert!(
                matches!(parse_all(bad, 50), Err(HeadError::BadLine { line: 1, .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let (head, _) = parse_all(b"X-Token_!#$%&'*+-.^`|~9: v\r\n\r\n", 60).unwrap();
        assert_eq!(head.headers.get("x-token_!#$%&'*+-.^`|~9"), Some("v"));
        assert!(matches!(
            parse_all(b"Status: abc\r\n\r\n", 50),
            Err(HeadError::BadStatus(_))
        ));
        assert!(matches!(
            parse_all(b"Status: 99 Low\r\n\r\n", 50),
            Err(HeadError::BadStatus(_))
        ));
    }

    #[test]
    fn stdout_ending_inside_the_head_is_incomplete() {
        assert_eq!(
            parse_all(b"X: 1\r\n", 3).unwrap_err(),
            HeadError::Incomplete { received: 6 }
        );
    }
}
