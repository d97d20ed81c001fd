//! `fcgi`: curl for FastCGI.
//!
//! * `fcgi request [ADDR] SCRIPT[?QUERY]` sends a request with the CGI params
//!   nginx would send, streams the body to standard output and the server's
//!   stderr to standard error (or prints one JSON object with `--json`);
//! * `fcgi ping` and `fcgi status` read php-fpm's ping and status pages;
//! * `fcgi exporter` serves them as Prometheus metrics;
//! * `fcgi health` checks a pool against thresholds;
//! * `fcgi doctor` diagnoses a pool;
//! * `fcgi values` asks for the FastCGI management values;
//! * `fcgi eval` runs PHP code inside a php-fpm pool;
//! * `fcgi bench` load-tests a script;
//! * `fcgi serve` serves a PHP application over HTTP;
//! * `fcgi completions SHELL` and `fcgi man` print the shell completions and
//!   the manual pages.
//!
//! The layout, as cargo's own command line: [`cli`] holds the parser and the
//! enum of subcommands; [`commands`] one module per subcommand, with its
//! options and its `run` function, and the dispatch; [`shared`] what several
//! subcommands use (addresses, exit codes, verbose output, spawning,
//! php-fpm's status page, Prometheus metrics); [`cgi`] builds a request's
//! CGI params and body.
//!
//! Exit codes are a contract (see [`shared::failure`]); every error is one
//! line on standard error starting with `fcgi: error: `.

// The argument structs' doc comments are also clap's help text, where
// `[ADDR]` means an optional address, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod cgi;
mod cli;
mod commands;
mod shared;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use shared::failure::{self, Failure};

/// mimalloc instead of the C library's allocator: `fcgi serve` and `fcgi
/// bench` allocate and free small blocks on every request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    match commands::run(&cli.command) {
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
            report(&cli::missing_command())
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
