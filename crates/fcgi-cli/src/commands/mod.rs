//! One module per subcommand, each owning its options (a clap `Args`
//! struct) and its `run` function, and [`run`], which dispatches to them:
//!
//! * [`request`]: one request in any role (`fcgi request`);
//! * [`ping`], [`status`], [`health`], [`doctor`]: php-fpm's ping and
//!   status pages, thresholds and a diagnosis;
//! * [`values`]: the FastCGI management values;
//! * [`eval`]: PHP code run inside a pool;
//! * [`mod@bench`]: a load generator;
//! * [`serve`]: an HTTP server in front of FastCGI;
//! * [`exporter`]: Prometheus metrics of php-fpm pools;
//! * [`completions`], [`man`]: shell completions and manual pages.
//!
//! What several of them use lives in [`crate::shared`].

pub mod bench;
pub mod completions;
pub mod doctor;
pub mod eval;
pub mod exporter;
pub mod health;
pub mod man;
pub mod ping;
pub mod request;
pub mod serve;
pub mod status;
pub mod values;

use crate::cli::Command;
use crate::shared::failure::Failure;
use crate::shared::verbose;

/// Runs `command`, with the record trace on standard error first when it
/// was given `-v`.
pub fn run(command: &Command) -> Result<(), Failure> {
    if wants_record_trace(command) {
        verbose::install_record_trace();
    }
    match command {
        Command::Request(args) => request::run(args),
        Command::Ping(args) => ping::run(args),
        Command::Status(args) => status::run(args),
        Command::Health(args) => health::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Values(args) => values::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Exporter(args) => exporter::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// Whether `-v` asks for the record trace: every client command has it;
/// `serve` and `exporter` log through a subscriber of their own (see
/// [`serve::run`]), and the printing commands have no `-v`.
fn wants_record_trace(command: &Command) -> bool {
    match command {
        Command::Request(args) => args.request.conn.verbose,
        Command::Ping(args) => args.conn.verbose,
        Command::Status(args) => args.conn.verbose,
        Command::Health(args) => args.conn.verbose,
        Command::Doctor(args) => args.conn.verbose,
        Command::Values(args) => args.conn.verbose,
        Command::Eval(args) => args.conn.verbose,
        Command::Bench(args) => args.conn.verbose,
        Command::Serve(_) | Command::Exporter(_) => false,
        Command::Completions(_) | Command::Man(_) => false,
    }
}
