//! `fcgi values`: the FastCGI management values (FCGI_GET_VALUES).

use clap::Args;
use serde_json::{json, Map, Value};

use crate::shared::client::{connect, VALUE_NAMES};
use crate::shared::failure::Failure;
use crate::shared::options::{ConnArgs, ADDRESS_HELP, EXIT_HELP};
use crate::shared::output::write_stdout;
use crate::shared::verbose;

/// `fcgi values`.
#[derive(Debug, Args)]
#[command(after_help = format!("Sends FCGI_GET_VALUES for FCGI_MAX_CONNS, FCGI_MAX_REQS and FCGI_MPXS_CONNS
and prints NAME=VALUE for each answered name, then the names left out.
(php-fpm answers only FCGI_MPXS_CONNS=0.)

Examples:
  fcgi values
  fcgi values 127.0.0.1:9000 --json

{ADDRESS_HELP}

{EXIT_HELP}"))]
pub struct ValuesArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// Print {"values": {NAME: VALUE, ...}, "missing": [NAME, ...]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fcgi values`.
pub fn run(args: &ValuesArgs) -> Result<(), Failure> {
    let (_target, client) = connect(args.address.as_deref(), &args.conn)?;
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
    write_stdout(text.as_bytes(), "the values to standard output")
}
