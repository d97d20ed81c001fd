//! The command line's top: the [`Cli`] parser and the [`Command`] enum of
//! subcommands. Each subcommand's options live with its code in
//! [`crate::commands`]; the options several share, in
//! [`crate::shared::options`].

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::{
    bench::BenchArgs, completions::CompletionsArgs, doctor::DoctorArgs, eval::EvalArgs,
    exporter::ExporterArgs, health::HealthArgs, man::ManArgs, ping::PingArgs, request::RequestCmd,
    serve::ServeArgs, status::StatusArgs, values::ValuesArgs,
};
use crate::shared::failure::Failure;
use crate::shared::options::{ADDRESS_HELP, EXIT_HELP};

/// `fcgi`: curl for FastCGI.
#[derive(Debug, Parser)]
#[command(
    name = "fcgi",
    version,
    about = "curl for FastCGI: requests, php-fpm health checks and status, management values",
    after_help = format!("{ADDRESS_HELP}\n\n{EXIT_HELP}\n\nExamples:\n  fcgi request /var/www/html/index.php\n  fcgi request 127.0.0.1:9000 /var/www/html/info.php?x=1 -i\n  fcgi ping unix:/run/php/php8.2-fpm.sock\n  fcgi status --full\n  fcgi values 127.0.0.1:9000"),
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, in the order `fcgi --help` lists them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a request for a script and print the response.
    Request(RequestCmd),
    /// Check php-fpm's ping page (ping.path); exits 0 on the expected answer.
    Ping(PingArgs),
    /// Show php-fpm's pool status page (pm.status_path).
    Status(StatusArgs),
    /// Container probe: ping plus thresholds on the status page, with an
    /// exit code per failed check.
    Health(HealthArgs),
    /// Diagnose a php-fpm pool: each finding with the configuration line
    /// that fixes it.
    Doctor(DoctorArgs),
    /// Ask the server for FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS.
    Values(ValuesArgs),
    /// Run PHP code inside the php-fpm pool (where opcache and APCu live).
    Eval(EvalArgs),
    /// Load-test a script: the request of `fcgi request`, repeated over kept
    /// connections; prints requests/s, latency percentiles, statuses, errors.
    Bench(BenchArgs),
    /// Serve a PHP application over HTTP/1.1: static files from --root, scripts
    /// through FastCGI to the upstreams (like nginx with fastcgi_pass).
    Serve(ServeArgs),
    /// Serve php-fpm pools' status as Prometheus metrics on /metrics.
    Exporter(ExporterArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// powershell.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of fcgi or of one of its commands.
    Man(ManArgs),
}

/// The names of the subcommands in `definition` (the command line as
/// clap describes it), in `--help` order; clap's own `help` apart.
pub fn subcommand_names(definition: &clap::Command) -> Vec<&str> {
    definition
        .get_subcommands()
        .map(clap::Command::get_name)
        .filter(|name| *name != "help")
        .collect()
}

/// The failure for `fcgi` run without a command.
pub fn missing_command() -> Failure {
    let definition = Cli::command();
    let names = subcommand_names(&definition);
    let list = match names.split_last() {
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Failure::usage(format!("a command is needed: {list} (see `fcgi --help`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_missing_command_lists_every_command() {
        let message = missing_command().to_string();
        assert!(
            message.contains("request, ping, status, health, doctor, values, eval, bench, serve, exporter, completions or man"),
            "{message}"
        );
    }
}
