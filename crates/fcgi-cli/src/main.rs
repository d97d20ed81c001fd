//! `fcgi`: curl for FastCGI.
//!
//! * `fcgi request [ADDR] SCRIPT[?QUERY]` sends a request with the CGI params
//!   nginx would send, streams the body to standard output and the server's
//!   stderr to standard error (or prints one JSON object with `--json`);
//! * `fcgi ping` and `fcgi status` read php-fpm's ping and status pages
//!   ([`status`], parsing in [`fpm_status`], metrics in [`prometheus`]);
//! * `fcgi exporter` serves them as Prometheus metrics ([`exporter`]);
//! * `fcgi health` checks a pool against thresholds ([`health`]);
//! * `fcgi doctor` diagnoses a pool ([`doctor`]);
//! * `fcgi values` asks for the FastCGI management values;
//! * `fcgi eval` runs PHP code inside a php-fpm pool ([`eval`]);
//! * `fcgi bench` load-tests a script ([`mod@bench`]);
//! * `fcgi serve` serves a PHP application over HTTP ([`serve`]).
//!
//! Exit codes are a contract (see [`failure`]); every error is one line on
//! standard error starting with `fcgi: error: `.

// The argument structs' doc comments are also clap's help text, where
// `[ADDR]` means an optional address, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod args;
mod bench;
mod cgi;
mod commands;
mod doctor;
mod eval;
mod exporter;
mod failure;
mod fpm_status;
mod health;
mod prometheus;
mod serve;
mod signals;
mod spawn;
mod status;
mod target;
mod verbose;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::Failure;

/// mimalloc instead of the C library's allocator: `fcgi serve` and `fcgi
/// bench` allocate and free small blocks on every request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let verbose = match &cli.command {
        Command::Request(a) => a.request.conn.verbose,
        Command::Ping(a) => a.conn.verbose,
        Command::Status(a) => a.conn.verbose,
        Command::Health(a) => a.conn.verbose,
        Command::Doctor(a) => a.conn.verbose,
        Command::Values(a) => a.conn.verbose,
        Command::Eval(a) => a.conn.verbose,
        Command::Bench(a) => a.conn.verbose,
        // serve logs through its own subscriber (see serve::serve).
        Command::Serve(_) | Command::Exporter(_) => false,
    };
    if verbose {
        verbose::install_record_trace();
    }
    let result = match &cli.command {
        Command::Request(a) => commands::request(a),
        Command::Ping(a) => commands::ping(a),
        Command::Status(a) => status::status(a),
        Command::Health(a) => health::health(a),
        Command::Doctor(a) => doctor::doctor(a),
        Command::Values(a) => commands::values(a),
        Command::Eval(a) => eval::eval(a),
        Command::Bench(a) => bench::bench(a),
        Command::Serve(a) => serve::serve(a),
        Command::Exporter(a) => exporter::exporter(a),
    };
    match result {
        Ok(()) => ExitCode::from(failure::OK),
        Err(failure) => report(&failure),
    }
}

fn report(failure: &Failure) -> ExitCode {
    eprintln!("{failure}");
    ExitCode::from(failure.code)
}

/// `--help` and `--version` print as clap does; a usage error becomes one
/// `fcgi: error:` line and exit code 2.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            ExitCode::from(failure::OK)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            report(&Failure::usage(
                "a command is needed: request, ping, status, health, doctor, exporter, values, eval, bench or serve (see `fcgi --help`)",
            ))
        }
        _ => {
            // clap's message without its usage block, on one line.
            let text = err.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| !l.is_empty())
                .collect();
            let message = lines.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            report(&Failure::usage(format!(
                "{message} (see `fcgi --help` or `fcgi COMMAND --help`)"
            )))
        }
    }
}
