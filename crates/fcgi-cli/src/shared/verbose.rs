//! `-v`: informational lines, the params sent and the response head, and
//! the record trace of the library (tracing target
//! [`fcgi::RECORD_TRACE_TARGET`]) printed as one short line per record.

use std::fmt;
use std::io::{self, Write};

use fcgi::{Headers, Request};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Prints `* TEXT` on standard error.
pub fn info(text: &str) {
    line(&format!("* {text}"));
}

/// Prints `TEXT` on standard error.
pub fn line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Prints the params of `request`, one `> NAME=VALUE` line each.
pub fn print_params(request: &Request) {
    for (name, value) in request.params().iter() {
        line(&format!(
            "> {}={}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        ));
    }
}

/// Prints a response head: `< STATUS REASON`, then `< Name: value` lines.
pub fn print_head(status: u16, reason: &str, headers: &Headers) {
    line(&format!("< {status} {reason}"));
    for (name, value) in headers.iter() {
        line(&format!("< {name}: {}", String::from_utf8_lossy(value)));
    }
}

/// Formats a record event as `* record: send PARAMS id=1 len=512`.
struct RecordLine;

impl<S, N> FormatEvent<S, N> for RecordLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "* record: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the record trace on standard error (for `-v`).
pub fn install_record_trace() {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .event_format(RecordLine)
        .with_filter(Targets::new().with_target(fcgi::RECORD_TRACE_TARGET, Level::TRACE));
    let subscriber = tracing_subscriber::registry().with(layer);
    // Only fails when a subscriber is already set, which then prints instead.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
