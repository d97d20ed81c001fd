//! Static files for `fcgi serve`: content types from a small table, exact
//! lengths, one byte range (206/416), and conditional GET with ETag and
//! Last-Modified (304).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::{Frame, SizeHint};
use std::io::{Read, Seek};
use tokio::io::{AsyncRead, ReadBuf};

use super::{plain, ServeBody};

/// Bytes read from a file per body frame.
const READ_CHUNK: usize = 64 * 1024;
/// Files (or ranges) up to this size are read at once, synchronously (from
/// the page cache this costs less than a trip through tokio's blocking
/// pool, and nginx without aio does the same); larger ones stream.
const SMALL_FILE: u64 = 256 * 1024;

/// Content types by extension (lower case); anything else is
/// `application/octet-stream`.
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("xml", "application/xml"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("wasm", "application/wasm"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
];

/// The content type of `path` by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    CONTENT_TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map_or("application/octet-stream", |(_, t)| t)
}

/// An entity tag from the length and modification time, as nginx makes it.
fn etag(len: u64, modified: SystemTime) -> String {
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("\"{secs:x}-{len:x}\"")
}

/// True when an If-None-Match list names `etag` (weak comparison) or is `*`.
fn matches_etag(header: &[u8], etag: &str) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    text.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The requested byte range: `Ok(None)` for none (or one to ignore: several
/// ranges, or a malformed header), `Err(())` when unsatisfiable.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // The last `end` bytes.
        let Ok(suffix) = end.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(suffix), len - 1)
    } else {
        let Ok(start) = start.parse::<u64>() else {
            return Ok(None);
        };
        let end = if end.is_empty() {
            len.saturating_sub(1)
        } else {
            match end.parse::<u64>() {
                Ok(end) if end >= start => end.min(len.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if start >= len {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// Answers a request for the regular file at `path`.
pub async fn serve(method: &Method, headers: &HeaderMap, path: &Path) -> Response<ServeBody> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return plain(StatusCode::FORBIDDEN)
        }
        Err(_) => return plain(StatusCode::NOT_FOUND),
    };
    let meta = match file.metadata() {
        Ok(meta) if meta.is_file() => meta,
        _ => return plain(StatusCode::NOT_FOUND),
    };
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let tag = etag(len, modified);
    let last_modified = httpdate::fmt_http_date(modified);

    let mut response = Response::builder()
        .header(ETAG, &tag)
        .header(LAST_MODIFIED, &last_modified)
        .header(ACCEPT_RANGES, "bytes");

    // Conditional GET: If-None-Match wins over If-Modified-Since.
    let not_modified = match headers.get(IF_NONE_MATCH) {
        Some(inm) => matches_etag(inm.as_bytes(), &tag),
        None => headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| {
                let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                secs(modified) <= secs(since)
            }),
    };
    if not_modified {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(ServeBody::default())
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR));
    }

    let if_range_ok = headers
        .get(IF_RANGE)
        .is_none_or(|v| v.as_bytes() == tag.as_bytes() || v.as_bytes() == last_modified.as_bytes());
    let range = match headers.get(RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if if_range_ok => parse_range(range, len),
        _ => Ok(None),
    };
    let (status, start, count) = match range {
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((start, end))) => {
            response = response.header(CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Err(()) => {
            let mut r = plain(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            return r;
        }
    };
    if start > 0 && file.seek(io::SeekFrom::Start(start)).is_err() {
        return plain(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let body = if method == Method::HEAD || count == 0 {
        ServeBody::default()
    } else if count <= SMALL_FILE {
        let mut bytes = vec![0; count as usize];
        if file.read_exact(&mut bytes).is_err() {
            return plain(StatusCode::INTERNAL_SERVER_ERROR);
        }
        super::boxed(http_body_util::Full::new(Bytes::from(bytes)))
    } else {
        super::boxed(FileBody {
            file: tokio::fs::File::from_std(file),
            remaining: count,
        })
    };
    response
        .status(status)
        .header(CONTENT_TYPE, content_type(path))
        .header(CONTENT_LENGTH, count)
        .body(body)
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

/// A file (from its current position) as a body of exactly `remaining` bytes.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(READ_CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being sent",
                    ))));
                }
                buf.truncate(n);
                self.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_like_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-500", 100), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("bytes=9-1", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Ok(None));
    }

    #[test]
    fn etags_match_weakly_and_in_lists() {
        assert!(matches_etag(b"\"a-1\"", "\"a-1\""));
        assert!(matches_etag(b"W/\"a-1\"", "\"a-1\""));
        assert!(matches_etag(b"\"x\", \"a-1\"", "\"a-1\""));
        assert!(matches_etag(b"*", "\"a-1\""));
        assert!(!matches_etag(b"\"a-2\"", "\"a-1\""));
    }

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(
            content_type(Path::new("/a/b.CSS")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("/a/b")), "application/octet-stream");
    }
}
