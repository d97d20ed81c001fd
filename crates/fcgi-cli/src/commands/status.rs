//! `fcgi status`: php-fpm's status page (`pm.status_path`) as aligned text,
//! as php-fpm's JSON, or as Prometheus metrics (the exporter's, for one
//! pool), with `--full` for the workers.

use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

use crate::shared::client::connect;
use crate::shared::failure::Failure;
use crate::shared::fpm_status::{self, DEFAULT_STATUS_PATH};
use crate::shared::options::{ConnArgs, ADDRESS_HELP, EXIT_HELP};
use crate::shared::output::write_stdout;
use crate::shared::prometheus::{self, PoolScrape, DEFAULT_MAX_PROCESSES};

/// How `fcgi status` prints the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// One `name: value` line per figure, then (with --full) a table of
    /// the workers.
    #[default]
    Text,
    /// php-fpm's JSON as it came.
    Json,
    /// The Prometheus text format, as `fcgi exporter` serves it.
    Prometheus,
}

/// `fcgi status`.
#[derive(Debug, Args)]
#[command(after_help = format!("Asks --path (SCRIPT_NAME; php-fpm's pm.status_path) for `?json` (or
`?json&full` with --full) and prints the pool's figures: --format text (one
per line, and with --full a table of the workers), json (php-fpm's JSON as it
came) or prometheus (the metrics of `fcgi exporter` for this pool, with
--full the per-process series too).

`accepted conn`, `slow requests` and `max children reached` count since the
pool started; `listen queue len` is the size of the queue (a setting), not
its fill: `listen queue` is that.

Examples:
  fcgi status
  fcgi status 127.0.0.1:9000 --full
  fcgi status unix:/run/php/php8.2-fpm.sock --format json | jq '.\"active processes\"'
  fcgi status --format prometheus > /var/lib/node_exporter/phpfpm.prom

{ADDRESS_HELP}

{EXIT_HELP}"))]
pub struct StatusArgs {
    /// The server's address (discovered when left out).
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// The status page (php-fpm's pm.status_path).
    #[arg(long, default_value = DEFAULT_STATUS_PATH, value_name = "PATH")]
    pub path: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Include every process of the pool.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fcgi status`.
pub fn run(args: &StatusArgs) -> Result<(), Failure> {
    let (target, client) = connect(args.address.as_deref(), &args.conn)?;
    let address = target.address.to_string();
    let started = Instant::now();
    let page = fpm_status::fetch(&client, &args.path, args.full, args.conn.verbose)
        .map_err(|e| e.failure("status", &args.path, &address))?;
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Json => {
            let mut body = page.body;
            if body.last() != Some(&b'\n') {
                body.push(b'\n');
            }
            body
        }
        Format::Text => render_text(&page.object).into_bytes(),
        Format::Prometheus => {
            let scrape = PoolScrape {
                address,
                pool: page.status.pool.clone(),
                result: Ok(page.status),
                duration: started.elapsed(),
            };
            let per_process = args.full.then_some(DEFAULT_MAX_PROCESSES);
            prometheus::render(&[scrape], per_process).into_bytes()
        }
    };
    write_stdout(&text, "the status to standard output")
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// php-fpm's status figures as `name: value` lines, then (with `full`) a
/// table of its processes.
pub fn render_text(figures: &Map<String, Value>) -> String {
    let width = figures
        .keys()
        .filter(|k| *k != "processes")
        .map(|k| k.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (name, value) in figures {
        if name == "processes" {
            continue;
        }
        out.push_str(&format!(
            "{:width$}  {}\n",
            format!("{name}:"),
            plain(value),
            width = width + 1
        ));
    }
    if let Some(Value::Array(processes)) = figures.get("processes") {
        let columns = [
            "pid",
            "state",
            "requests",
            "request duration",
            "request method",
            "request uri",
            "script",
            "last request cpu",
            "last request memory",
        ];
        let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.to_string()).collect()];
        for process in processes {
            rows.push(
                columns
                    .iter()
                    .map(|c| process.get(*c).map(plain).unwrap_or_default())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..columns.len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        out.push_str(&format!("\nprocesses ({}):\n", processes.len()));
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_figures_are_aligned_lines() {
        let figures: Value = serde_json::from_str(
            r#"{"pool":"www","accepted conn":12,"processes":[{"pid":7,"state":"Idle","requests":3}]}"#,
        )
        .unwrap();
        let text = render_text(figures.as_object().unwrap());
        assert!(
            text.starts_with("pool:           www\naccepted conn:  12\n"),
            "{text}"
        );
        assert!(text.contains("processes (1):\npid  state"), "{text}");
        assert!(text.contains("\n7    Idle   3"), "{text}");
    }
}
