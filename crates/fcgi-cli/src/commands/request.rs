//! `fcgi request`: one request in any of the three roles (responder,
//! authorizer, filter), its body streamed to standard output or the whole
//! response printed as one JSON object.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use fcgi::{Authorization, Chunk, Client, Headers, Request, Response};
use serde_json::{json, Map, Value};

use crate::cgi::build_request;
use crate::shared::client::client;
use crate::shared::failure::{Failure, DENIED, HTTP_FAIL, OTHER};
use crate::shared::options::{RequestArgs, ADDRESS_HELP, EXIT_HELP};
use crate::shared::output::{write_failure, write_stdout, ServerStderr};
use crate::shared::spawn::{Server, SpawnArgs};
use crate::shared::target::split_positionals;
use crate::shared::verbose::{print_head, print_params};

const REQUEST_HELP: &str = "\
ADDR or not: with two positional arguments the first is ADDR and the second
SCRIPT; with one, it is SCRIPT and ADDR is discovered (a lone argument that
can only be an address, such as 127.0.0.1:9000 or unix:/x.sock, is refused).

SCRIPT is the script's path on the server (SCRIPT_FILENAME). With
--document-root ROOT, SCRIPT may be a path under ROOT (/var/www/app/x.php) or
a URI path (/app/x.php); SCRIPT_NAME is then the part below ROOT.

Params sent, like nginx's fastcgi_params: QUERY_STRING, REQUEST_METHOD,
CONTENT_TYPE and CONTENT_LENGTH (with a body), SCRIPT_FILENAME, SCRIPT_NAME,
REQUEST_URI, DOCUMENT_URI, DOCUMENT_ROOT (ROOT, else /), SERVER_PROTOCOL,
REQUEST_SCHEME, GATEWAY_INTERFACE, SERVER_SOFTWARE, REMOTE_ADDR, REMOTE_PORT,
SERVER_ADDR, SERVER_PORT, SERVER_NAME, REDIRECT_STATUS, HTTP_HOST; then -H
headers, then -p params, then --unset-param removals.

Examples:
  fcgi request /var/www/html/index.php
  fcgi request 127.0.0.1:9000 /srv/app/public/index.php?page=2 -i
  fcgi request unix:/run/php/php8.2-fpm.sock /srv/www/api.php --json-body '{\"a\":1}'
  fcgi request /srv/www/form.php --form name=world --form lang=en
  fcgi request /srv/www/upload.php -X PUT -d @big.iso -H 'Content-Type: application/octet-stream'
  tar c dir | fcgi request /srv/www/upload.php -d @-
  fcgi request --document-root /srv/www /index.php -H 'Host: example.com' -p HTTPS=on
  fcgi request /srv/www/index.php --json | jq .status
  fcgi request /srv/www/health.php --fail -s -o /dev/null
  fcgi request --spawn php-cgi hello.php
  fcgi request --role authorizer /srv/auth.php -H 'Authorization: Bearer x'
  fcgi request --role filter --filter-data page.html /srv/filter.php

Roles: --role authorizer sends no body; granted (status 200) prints the
Variable-NAME headers as NAME=value lines (--json: a `variables` array) and
exits 0; denied prints the response as a responder's would and exits 8.
--role filter sends --filter-data FILE on the DATA stream, with
FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD taken from the file.

--spawn 'CMD ARGS' starts the FastCGI application itself (its listening
socket as file descriptor 0, as web servers did for php-cgi), sends the
request to it and stops it; no ADDR then. A relative SCRIPT is made absolute.";

/// `fcgi request`: the options of [`RequestArgs`] (shared with `fcgi
/// bench`), the role and `--spawn`.
#[derive(Debug, Args)]
#[command(
    override_usage = "fcgi request [OPTIONS] [ADDR] SCRIPT[?QUERY]",
    after_help = format!("{REQUEST_HELP}\n\n{ADDRESS_HELP}\n\n{EXIT_HELP}")
)]
pub struct RequestCmd {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub roles: RoleArgs,
    #[command(flatten)]
    pub spawn: SpawnArgs,
}

/// The FastCGI role of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RoleName {
    /// An ordinary request: the application answers it.
    #[default]
    Responder,
    /// The application decides whether the request may proceed.
    Authorizer,
    /// The application filters the file given with --filter-data.
    Filter,
}

/// `--role` and `--filter-data`.
#[derive(Debug, Args, Clone, Default)]
pub struct RoleArgs {
    /// The FastCGI role: responder, authorizer (no body; exit 8 when denied)
    /// or filter (needs --filter-data).
    #[arg(long, value_enum, value_name = "ROLE", default_value_t = RoleName::Responder)]
    pub role: RoleName,
    /// With --role filter: the file sent on the DATA stream (streamed from
    /// disk), with FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD from the file.
    #[arg(long, value_name = "FILE")]
    pub filter_data: Option<PathBuf>,
}

/// `fcgi request`.
pub fn run(cmd: &RequestCmd) -> Result<(), Failure> {
    let args = &cmd.request;
    let role = check_role_options(cmd)?;
    let (address, script) = split_positionals(&args.positional)?;
    let script = cmd
        .spawn
        .script(address, script, args.shape.document_root.as_deref())?;
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
    write_stdout(
        format!("{}\n", Value::Object(object)).as_bytes(),
        "the JSON to standard output",
    )
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
