//! The subcommands `request` (in the three roles), `ping` and `values`,
//! and the client and output helpers the other commands share.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fcgi::{Authorization, Chunk, Client, Config, Headers, Request, Response};
use serde_json::{json, Map, Value};

use crate::args::{ConnArgs, PingArgs, RequestArgs, RequestCmd, RoleName, ValuesArgs};
use crate::cgi::build_request;
use crate::failure::{Failure, DENIED, HTTP_FAIL, OTHER};
use crate::fpm_status;
use crate::spawn::Server;
use crate::target::{resolve, split_positionals, Target};
use crate::verbose;

/// The names `fcgi values` asks for.
pub const VALUE_NAMES: [&str; 3] = [
    fcgi::fcgi_proto::record::MAX_CONNS,
    fcgi::fcgi_proto::record::MAX_REQS,
    fcgi::fcgi_proto::record::MPXS_CONNS,
];

/// The client for `target` with the time limits of `conn`.
pub fn client(target: &Target, conn: &ConnArgs, max_head: Option<u64>) -> Result<Client, Failure> {
    if conn.verbose {
        verbose::info(&format!("address {} ({})", target.address, target.how));
    }
    let mut config = Config::default()
        .connect_timeout(conn.connect_timeout)
        .deadline(conn.timeout)
        .idle_timeout(conn.timeout);
    if let Some(max) = max_head {
        config = config.max_head_bytes(usize::try_from(max).unwrap_or(usize::MAX));
    }
    Ok(Client::with_config(target.address.clone(), config)?)
}

pub fn print_params(request: &Request) {
    for (name, value) in request.params().iter() {
        verbose::line(&format!(
            "> {}={}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        ));
    }
}

pub fn print_head(status: u16, reason: &str, headers: &Headers) {
    verbose::line(&format!("< {status} {reason}"));
    for (name, value) in headers.iter() {
        verbose::line(&format!("< {name}: {}", String::from_utf8_lossy(value)));
    }
}

pub fn write_failure(what: &str) -> impl Fn(io::Error) -> Failure + '_ {
    move |e| Failure::new(OTHER, format!("cannot write {what}: {e}"))
}

/// `fcgi request`.
pub fn request(cmd: &RequestCmd) -> Result<(), Failure> {
    let args = &cmd.request;
    let role = check_role_options(cmd)?;
    let (address, script) = split_positionals(&args.positional)?;
    if let (Some(_), Some(address)) = (&cmd.spawn.spawn, address) {
        // Checked before anything is read or started.
        return Err(Failure::usage(format!(
            "ADDR {address:?} cannot be given with --spawn (the spawned application listens on a socket of its own)"
        )));
    }
    let script = if cmd.spawn.spawn.is_some() && args.shape.document_root.is_none() {
        absolute_script(script)?
    } else {
        script.to_string()
    };
    let mut request = build_request(args, &script)?;
    match role {
        RoleName::Responder => {}
        RoleName::Authorizer => request = request.into_authorizer(),
        RoleName::Filter => {
            let path = cmd.roles.filter_data.as_deref().unwrap_or(Path::new(""));
            request = request.into_filter_file(path).map_err(|e| {
                Failure::usage(format!(
                    "cannot open the file {} given with --filter-data: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let mut server = Server::open(&cmd.spawn, address)?;
    let client = client(&server.target, &args.conn, args.shape.max_header_bytes)?;
    if args.conn.verbose {
        print_params(&request);
    }
    let result = if role == RoleName::Authorizer {
        authorize(&client, request, args)
    } else if args.json {
        request_json(&client, request, args)
    } else {
        request_streamed(&client, request, args)
    };
    server.stop();
    result
}

/// The role, after checking that the options fit it.
fn check_role_options(cmd: &RequestCmd) -> Result<RoleName, Failure> {
    let args = &cmd.request;
    let role = cmd.roles.role;
    match role {
        RoleName::Filter if cmd.roles.filter_data.is_none() => Err(Failure::usage(
            "--role filter needs --filter-data FILE (the file to filter)",
        )),
        RoleName::Responder | RoleName::Authorizer if cmd.roles.filter_data.is_some() => Err(
            Failure::usage("--filter-data is sent only in the filter role: add --role filter"),
        ),
        RoleName::Authorizer
            if args.data.is_some()
                || !args.shape.form.is_empty()
                || args.shape.json_body.is_some() =>
        {
            Err(Failure::usage(
                "--role authorizer sends no body: drop -d, --form and --json-body",
            ))
        }
        _ => Ok(role),
    }
}

/// SCRIPT (with its query) made absolute against the current directory: a
/// spawned application runs here, and php-cgi wants a full path.
pub fn absolute_script(script: &str) -> Result<String, Failure> {
    let (path, query) = match script.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (script, None),
    };
    if path.is_empty() || path.starts_with('/') {
        return Ok(script.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        Failure::new(
            OTHER,
            format!("cannot find the current directory to locate {path:?}: {e}"),
        )
    })?;
    let full = cwd.join(path).display().to_string();
    Ok(match query {
        Some(query) => format!("{full}?{query}"),
        None => full,
    })
}

/// Where the body goes: standard output, `-o FILE`, or nowhere (`--fail`).
fn open_output(args: &RequestArgs, discard: bool) -> Result<(Box<dyn Write>, String), Failure> {
    let what = match &args.output {
        Some(path) => format!("the body to {}", path.display()),
        None => "the body to standard output".to_string(),
    };
    let out: Box<dyn Write> = if discard {
        Box::new(io::sink())
    } else if let Some(path) = &args.output {
        let file = File::create(path).map_err(|e| {
            Failure::new(
                OTHER,
                format!("cannot create the output file {}: {e}", path.display()),
            )
        })?;
        Box::new(BufWriter::new(file))
    } else {
        Box::new(io::stdout().lock())
    };
    Ok((out, what))
}

/// `STATUS REASON`, the headers and an empty line, as `-i` prints them.
fn head_text(status: u16, reason: &str, headers: &Headers) -> String {
    let mut head = format!("{status} {reason}\n");
    for (name, value) in headers.iter() {
        head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value)));
    }
    head.push('\n');
    head
}

/// A responder or filter request, with the body streamed as it arrives.
fn request_streamed(client: &Client, request: Request, args: &RequestArgs) -> Result<(), Failure> {
    let mut stream = client.stream(request)?;
    let (status, reason) = (stream.status(), stream.reason().to_string());
    if args.conn.verbose {
        print_head(status, &reason, stream.headers());
    }
    let failing = args.fail && status >= 400;
    let mut stderr = ServerStderr::new(args.silent);
    stderr.write(stream.stderr());
    let (mut out, what) = open_output(args, failing)?;
    if args.include {
        out.write_all(head_text(status, &reason, stream.headers()).as_bytes())
            .map_err(write_failure(&what))?;
    }
    while let Some(chunk) = stream.next_chunk()? {
        match chunk {
            Chunk::Body(bytes) => out.write_all(bytes).map_err(write_failure(&what))?,
            Chunk::Stderr(bytes) => stderr.write(bytes),
        }
    }
    out.flush().map_err(write_failure(&what))?;
    if failing {
        return Err(fail_status(status, &reason));
    }
    Ok(())
}

/// An authorizer request: granted prints the variables and succeeds,
/// denied prints the server's response and fails with [`DENIED`].
fn authorize(client: &Client, request: Request, args: &RequestArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let response = client.execute(request)?;
    let elapsed = started.elapsed();
    if args.conn.verbose {
        print_head(response.status, &response.reason, &response.headers);
    }
    let denied = Failure::new(
        DENIED,
        format!(
            "the authorizer denied the request: {} {}",
            response.status, response.reason
        ),
    );
    let outcome = Authorization::from_response(response);
    let (response, variables) = match &outcome {
        Authorization::Granted {
            variables,
            response,
        } => (response, Some(variables)),
        Authorization::Denied(response) => (response, None),
    };
    if args.json {
        let mut object = response_object(response, elapsed);
        object.insert("authorized".into(), json!(variables.is_some()));
        if let Some(variables) = variables {
            let list: Vec<Value> = variables
                .iter()
                .map(|(name, value)| json!([name, String::from_utf8_lossy(value)]))
                .collect();
            object.insert("variables".into(), Value::Array(list));
        }
        print_json(object)?;
    } else {
        let mut stderr = ServerStderr::new(args.silent);
        stderr.write(&response.stderr);
        let (mut out, what) = open_output(args, false)?;
        if args.include {
            out.write_all(
                head_text(response.status, &response.reason, &response.headers).as_bytes(),
            )
            .map_err(write_failure(&what))?;
        }
        match variables {
            Some(variables) => {
                for (name, value) in variables {
                    out.write_all(format!("{name}=").as_bytes())
                        .and_then(|()| out.write_all(value))
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(write_failure(&what))?;
                }
            }
            None => out
                .write_all(&response.body)
                .map_err(write_failure(&what))?,
        }
        out.flush().map_err(write_failure(&what))?;
    }
    match outcome {
        Authorization::Granted { .. } => Ok(()),
        Authorization::Denied(_) => Err(denied),
    }
}

/// The server's FastCGI stderr, passed to standard error as it arrives
/// (unless silenced); a missing final line break is added at the end, so
/// that what follows starts on a line of its own.
pub struct ServerStderr {
    silent: bool,
    last: Option<u8>,
}

impl ServerStderr {
    pub fn new(silent: bool) -> ServerStderr {
        ServerStderr { silent, last: None }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        if self.silent || bytes.is_empty() {
            return;
        }
        // Nowhere left to report a failing standard error.
        let _ = io::stderr().lock().write_all(bytes);
        self.last = bytes.last().copied();
    }
}

impl Drop for ServerStderr {
    fn drop(&mut self) {
        if self.last.is_some_and(|b| b != b'\n') {
            let _ = io::stderr().lock().write_all(b"\n");
        }
    }
}

fn fail_status(status: u16, reason: &str) -> Failure {
    Failure::new(
        HTTP_FAIL,
        format!("the server answered {status} {reason} (--fail: statuses of 400 and more fail)"),
    )
}

/// A string field, or its base64 form under `NAME_base64` when not UTF-8.
fn text_or_base64(object: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            object.insert(name.to_string(), Value::from(text));
        }
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            object.insert(format!("{name}_base64"), Value::from(encoded));
        }
    }
}

/// The `--json` object of a response: status, status_text, headers, body,
/// stderr, app_status and duration_ms.
fn response_object(response: &Response, elapsed: Duration) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("status".into(), json!(response.status));
    object.insert("status_text".into(), json!(response.reason));
    let headers: Vec<Value> = response
        .headers
        .iter()
        .map(|(name, value)| json!([name, String::from_utf8_lossy(value)]))
        .collect();
    object.insert("headers".into(), Value::Array(headers));
    text_or_base64(&mut object, "body", &response.body);
    text_or_base64(&mut object, "stderr", &response.stderr);
    if response.stderr_dropped > 0 {
        object.insert("stderr_dropped".into(), json!(response.stderr_dropped));
    }
    object.insert("app_status".into(), json!(response.app_status));
    let ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    object.insert("duration_ms".into(), json!(ms));
    object
}

fn print_json(object: Map<String, Value>) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", Value::Object(object))
        .and_then(|()| stdout.flush())
        .map_err(write_failure("the JSON to standard output"))
}

fn request_json(client: &Client, request: Request, args: &RequestArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let response = client.execute(request)?;
    let elapsed = started.elapsed();
    if args.conn.verbose {
        print_head(response.status, &response.reason, &response.headers);
    }
    print_json(response_object(&response, elapsed))?;
    if args.fail && response.status >= 400 {
        return Err(fail_status(response.status, &response.reason));
    }
    Ok(())
}

/// `fcgi ping`.
pub fn ping(args: &PingArgs) -> Result<(), Failure> {
    let target = resolve(args.address.as_deref())?;
    let client = client(&target, &args.conn, None)?;
    let elapsed =
        fpm_status::ping(&client, &args.path, &args.expect, args.conn.verbose).map_err(|e| {
            e.failure(
                "ping",
                &args.path,
                &format!("{} (expected {:?})", target.address, args.expect),
            )
        })?;
    println!(
        "{} from {} in {:.1} ms",
        args.expect,
        target.address,
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// `fcgi values`.
pub fn values(args: &ValuesArgs) -> Result<(), Failure> {
    let target = resolve(args.address.as_deref())?;
    let client = client(&target, &args.conn, None)?;
    if args.conn.verbose {
        verbose::info(&format!("FCGI_GET_VALUES {}", VALUE_NAMES.join(" ")));
    }
    let answered = client.get_values(&VALUE_NAMES)?;
    let missing: Vec<&str> = VALUE_NAMES
        .iter()
        .copied()
        .filter(|n| !answered.iter().any(|(a, _)| a == n))
        .collect();
    let text = if args.json {
        let mut values = Map::new();
        for (name, value) in &answered {
            values.insert(name.clone(), Value::from(value.as_str()));
        }
        format!("{}\n", json!({ "values": values, "missing": missing }))
    } else {
        let mut text = String::new();
        for (name, value) in &answered {
            text.push_str(&format!("{name}={value}\n"));
        }
        if !missing.is_empty() {
            text.push_str(&format!("not answered: {}\n", missing.join(", ")));
        }
        text
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(write_failure("the values to standard output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_goes_to_base64() {
        let mut object = Map::new();
        text_or_base64(&mut object, "body", b"ok");
        text_or_base64(&mut object, "stderr", &[0xff, 0xfe]);
        assert_eq!(object["body"], "ok");
        assert_eq!(object["stderr_base64"], "//4=");
        assert!(!object.contains_key("stderr"));
    }
}
