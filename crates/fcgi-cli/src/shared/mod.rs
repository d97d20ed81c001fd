//! What several subcommands share, so that no subcommand imports another:
//!
//! * [`options`]: the options and `--help` paragraphs common to commands;
//! * [`failure`]: exit codes and the one-line error reports;
//! * [`target`]: the address given or discovered;
//! * [`client`]: the configured blocking client, the management values;
//! * [`output`]: write failures, the server's stderr passed on;
//! * [`verbose`]: `-v` lines and the record trace;
//! * [`spawn`]: `--spawn`, starting the FastCGI application;
//! * [`signals`]: the signals long-running commands stop on;
//! * [`fpm_status`]: php-fpm's ping and status pages;
//! * [`prometheus`]: those pages as Prometheus metrics.

pub mod client;
pub mod failure;
pub mod fpm_status;
pub mod options;
pub mod output;
pub mod prometheus;
pub mod signals;
pub mod spawn;
pub mod target;
pub mod verbose;
