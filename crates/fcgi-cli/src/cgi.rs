//! Turning `fcgi request` options into a FastCGI request: the CGI params
//! nginx's `fastcgi_params` would send, headers as `HTTP_*` params, raw param
//! overrides, and the body (literal, file, standard input or form).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;

use std::net::SocketAddr;

use fcgi::cgi::{header_param_name, CgiParams};
use fcgi::{Body, Request};

use crate::shared::failure::{Failure, OTHER};
use crate::shared::options::RequestArgs;

/// SERVER_SOFTWARE sent with every request.
pub use fcgi::cgi::SERVER_SOFTWARE;

/// REMOTE_ADDR and SERVER_ADDR: the CLI stands for a local HTTP client.
const LOOPBACK: [u8; 4] = [127, 0, 0, 1];

/// SERVER_PORT sent with every request.
const DEFAULT_SERVER_PORT: u16 = 80;

/// SERVER_NAME and HTTP_HOST unless `-H 'Host: ...'` sets another.
const DEFAULT_HOST: &str = "localhost";

/// Content type of `-d` and `--form` bodies unless a header sets one.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Content type of `--json-body`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Where SCRIPT lives: SCRIPT_FILENAME, SCRIPT_NAME and DOCUMENT_ROOT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptPaths {
    /// The file on the server.
    pub filename: String,
    /// The URI path of the script.
    pub name: String,
    /// The document root ("/" when none was given).
    pub document_root: String,
}

/// Works out SCRIPT_FILENAME, SCRIPT_NAME and DOCUMENT_ROOT from SCRIPT and
/// `--document-root`: a SCRIPT under ROOT keeps its path and SCRIPT_NAME is
/// the rest; any other SCRIPT is a URI path below ROOT.
pub fn script_paths(path: &str, document_root: Option<&str>) -> ScriptPaths {
    let Some(root) = document_root else {
        return ScriptPaths {
            filename: path.to_string(),
            name: path.to_string(),
            document_root: "/".to_string(),
        };
    };
    let root = root.trim_end_matches('/');
    let document_root = if root.is_empty() { "/" } else { root }.to_string();
    if let Some(rest) = path.strip_prefix(root) {
        if rest.starts_with('/') {
            return ScriptPaths {
                filename: path.to_string(),
                name: rest.to_string(),
                document_root,
            };
        }
    }
    let name = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    ScriptPaths {
        filename: format!("{root}{name}"),
        name,
        document_root,
    }
}

/// Parses `-H 'Name: value'`.
pub fn parse_header(text: &str) -> Result<(String, String), Failure> {
    let (name, value) = text.split_once(':').ok_or_else(|| {
        Failure::usage(format!(
            "header {text:?} has no ':'; write it as -H 'Name: value'"
        ))
    })?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::usage(format!(
            "header {text:?} has no valid name before ':'; write it as -H 'Name: value'"
        )));
    }
    Ok((header_param_name(name), value.trim().to_string()))
}

/// Parses `-p NAME=VALUE` (`NAME=` is an empty value).
pub fn parse_param(text: &str) -> Result<(&str, &str), Failure> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => Err(Failure::usage(format!(
            "param {text:?} is not NAME=VALUE (write NAME= for an empty value)"
        ))),
    }
}

/// application/x-www-form-urlencoded encoding of one name or value: ASCII
/// letters, digits and `*-._` stay, space becomes `+`, the rest `%XX`.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `--form` fields as one url-encoded body.
pub fn form_body(fields: &[String]) -> Result<String, Failure> {
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("form field {field:?} is not name=value")))?;
        parts.push(format!("{}={}", form_encode(name), form_encode(value)));
    }
    Ok(parts.join("&"))
}

/// A body ready to send: the body and its length (always known).
pub struct PreparedBody {
    /// The body.
    pub body: Body,
    /// Its length.
    pub len: u64,
    /// The content type it implies unless a header sets one.
    pub content_type: &'static str,
}

/// The body of `-d`, `--form` or `--json-body`, if any.
pub fn prepare_body(args: &RequestArgs) -> Result<Option<PreparedBody>, Failure> {
    if let Some(data) = &args.data {
        let body = match data.strip_prefix('@') {
            Some("-") => body_from_stdin()?,
            Some(path) => {
                let file = File::open(path).map_err(|e| {
                    Failure::usage(format!(
                        "cannot open the body file {path:?} given with -d @: {e}"
                    ))
                })?;
                body_from_file(file, path)?
            }
            None => {
                let bytes = data.clone().into_bytes();
                (bytes.len() as u64, Body::from(bytes))
            }
        };
        return Ok(Some(PreparedBody {
            len: body.0,
            body: body.1,
            content_type: FORM_CONTENT_TYPE,
        }));
    }
    if !args.shape.form.is_empty() {
        let text = form_body(&args.shape.form)?;
        return Ok(Some(PreparedBody {
            len: text.len() as u64,
            body: Body::from(text),
            content_type: FORM_CONTENT_TYPE,
        }));
    }
    if let Some(json) = &args.shape.json_body {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(json) {
            return Err(Failure::usage(format!(
                "--json-body is not valid JSON: {e} (use -d with -H 'Content-Type: application/json' to send it anyway)"
            )));
        }
        return Ok(Some(PreparedBody {
            len: json.len() as u64,
            body: Body::from(json.clone()),
            content_type: JSON_CONTENT_TYPE,
        }));
    }
    Ok(None)
}

fn body_from_stdin() -> Result<(u64, Body), Failure> {
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Failure::new(OTHER, format!("cannot use standard input: {e}")))?;
    body_from_file(File::from(fd), "standard input")
}

/// A regular file is streamed from where it stands, with its length; any
/// other (a pipe, a terminal, a FIFO) is first spooled to a temporary file
/// so that CONTENT_LENGTH is known, then streamed from there.
fn body_from_file(mut file: File, what: &str) -> Result<(u64, Body), Failure> {
    let read_error = |e: io::Error| Failure::new(OTHER, format!("cannot read {what}: {e}"));
    let meta = file.metadata().map_err(read_error)?;
    if meta.is_file() {
        let pos = file.stream_position().unwrap_or(0);
        let len = meta.len().saturating_sub(pos);
        return Ok((len, Body::from_reader(file.take(len), Some(len))));
    }
    let mut spool = tempfile::tempfile().map_err(|e| {
        Failure::new(
            OTHER,
            format!("cannot create a temporary file to hold {what} (check TMPDIR): {e}"),
        )
    })?;
    let len = io::copy(&mut file, &mut spool).map_err(|e| {
        Failure::new(
            OTHER,
            format!("cannot spool {what} to a temporary file (check TMPDIR and free space): {e}"),
        )
    })?;
    spool.seek(SeekFrom::Start(0)).map_err(read_error)?;
    Ok((len, Body::from_reader(spool, Some(len))))
}

/// The complete request for SCRIPT[?QUERY] with every option applied, and
/// the params in the order they are sent.
pub fn build_request(args: &RequestArgs, script: &str) -> Result<Request, Failure> {
    if script.split('?').next().is_some_and(str::is_empty) {
        return Err(empty_script());
    }
    let body = prepare_body(args)?;
    build_request_with(args, script, body)
}

fn empty_script() -> Failure {
    Failure::usage("SCRIPT is empty; give the script's path on the server")
}

/// [`build_request`] with the body already prepared (`fcgi bench` reads it
/// into memory once and sends it with every request).
pub fn build_request_with(
    args: &RequestArgs,
    script: &str,
    body: Option<PreparedBody>,
) -> Result<Request, Failure> {
    let (path, query) = script.split_once('?').unwrap_or((script, ""));
    if path.is_empty() {
        return Err(empty_script());
    }
    let paths = script_paths(path, args.shape.document_root.as_deref());
    let method = match &args.shape.method {
        Some(m) if m.is_empty() => return Err(Failure::usage("-X needs a method name")),
        Some(m) => m.clone(),
        None if body.is_some() => "POST".into(),
        None => "GET".into(),
    };
    let mut cgi = CgiParams::new(&method, &paths.filename)
        .script_name(&paths.name)
        .query(query)
        .document_root(&paths.document_root)
        .scheme(false)
        .server_software(SERVER_SOFTWARE)
        .remote(SocketAddr::from((LOOPBACK, 0)))
        .server(SocketAddr::from((LOOPBACK, DEFAULT_SERVER_PORT)))
        .server_name(DEFAULT_HOST)
        .host(DEFAULT_HOST.as_bytes());
    if let Some(body) = &body {
        cgi = cgi
            .content_type(body.content_type.as_bytes())
            .content_length(body.len);
    }
    let mut params = cgi.build();
    for header in &args.shape.headers {
        let (name, value) = parse_header(header)?;
        params.set(name, value);
    }
    for param in &args.shape.params {
        let (name, value) = parse_param(param)?;
        params.set(name, value);
    }
    for name in &args.shape.unset_params {
        params.remove(name);
    }
    let mut request = Request::new().params_from(params);
    if let Some(body) = body {
        request = request.body(body.body);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_root_the_script_is_its_own_name() {
        let p = script_paths("/srv/www/a.php", None);
        assert_eq!(p.filename, "/srv/www/a.php");
        assert_eq!(p.name, "/srv/www/a.php");
        assert_eq!(p.document_root, "/");
    }

    #[test]
    fn a_script_under_the_root_is_named_below_it() {
        let p = script_paths("/srv/www/app/a.php", Some("/srv/www/"));
        assert_eq!(p.filename, "/srv/www/app/a.php");
        assert_eq!(p.name, "/app/a.php");
        assert_eq!(p.document_root, "/srv/www");
    }

    #[test]
    fn a_uri_path_is_joined_to_the_root() {
        let p = script_paths("/app/a.php", Some("/srv/www"));
        assert_eq!(p.filename, "/srv/www/app/a.php");
        assert_eq!(p.name, "/app/a.php");
        let p = script_paths("a.php", Some("/srv/www"));
        assert_eq!(p.filename, "/srv/www/a.php");
        // A sibling directory sharing the prefix is not "under" the root.
        let p = script_paths("/srv/www2/a.php", Some("/srv/www"));
        assert_eq!(p.filename, "/srv/www/srv/www2/a.php");
    }

    #[test]
    fn headers_become_http_params() {
        assert_eq!(
            parse_header("X-Trace-Id: 42").unwrap(),
            ("HTTP_X_TRACE_ID".into(), "42".into())
        );
        assert_eq!(
            parse_header("content-type: text/plain").unwrap().0,
            "CONTENT_TYPE"
        );
        assert_eq!(
            parse_header("Content-Length:5").unwrap().0,
            "CONTENT_LENGTH"
        );
        assert_eq!(
            parse_header("Accept:").unwrap(),
            ("HTTP_ACCEPT".into(), String::new())
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
    }

    #[test]
    fn params_accept_empty_values() {
        assert_eq!(parse_param("A=").unwrap(), ("A", ""));
        assert_eq!(parse_param("A=b=c").unwrap(), ("A", "b=c"));
        assert!(parse_param("A").is_err());
        assert!(parse_param("=x").is_err());
    }

    #[test]
    fn form_fields_are_url_encoded() {
        let body = form_body(&["name=hello world".into(), "x&y=1=2/ü".into()]).unwrap();
        assert_eq!(body, "name=hello+world&x%26y=1%3D2%2F%C3%BC");
        assert!(form_body(&["novalue".into()]).is_err());
    }
}
