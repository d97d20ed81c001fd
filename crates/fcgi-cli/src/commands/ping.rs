//! `fcgi ping`: php-fpm's ping page (ping.path) and its expected answer,
//! fit for container health checks.

use clap::Args;

use crate::shared::client::connect;
use crate::shared::failure::Failure;
use crate::shared::fpm_status;
use crate::shared::options::{ConnArgs, ADDRESS_HELP, EXIT_HELP};

/// `fcgi ping`.
#[derive(Debug, Args)]
#[command(after_help = format!("Sends a GET for --path (SCRIPT_NAME; php-fpm's ping.path) and compares the
answer with --expect (php-fpm's ping.response, `pong` by default). Fit for
container health checks: exit 0 on the expected answer, else non-zero.

Examples:
  fcgi ping
  fcgi ping 127.0.0.1:9000 --timeout 2
  fcgi ping unix:/run/php/php8.2-fpm.sock --path /fpm-ping --expect ok
  HEALTHCHECK CMD [\"fcgi\", \"ping\", \"127.0.0.1:9000\"]

{ADDRESS_HELP}

{EXIT_HELP}"))]
pub struct PingArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// The ping page (php-fpm's ping.path).
    #[arg(long, default_value = "/ping", value_name = "PATH")]
    pub path: String,
    /// The expected answer (php-fpm's ping.response).
    #[arg(long, default_value = "pong", value_name = "TEXT")]
    pub expect: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fcgi ping`.
pub fn run(args: &PingArgs) -> Result<(), Failure> {
    let (target, client) = connect(args.address.as_deref(), &args.conn)?;
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
