//! `fcgi eval --all-workers`: the code once in every worker of a pool.
//!
//! opcache, APCu and PHP's stat cache live in each worker process, so a
//! cache operation reaches only the worker that runs it. The pool's
//! workers are read from its status page; as many requests as it has
//! workers are sent at once, each to a small wrapper script that first
//! registers its worker (an atomic `mkdir` named after the pid) and then
//! waits until every request has arrived (the rendezvous), so the requests
//! are held by as many different workers, none free to take a second. Only
//! then does each include the code. A worker that gets a second request
//! anyway (another client held a worker, the rendezvous timed out) finds
//! its directory taken and does not run the code again.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;

use serde_json::json;

use super::{
    is_script_unknown, remove_on_interrupt, script_filename, script_request, script_unknown,
    wrap_code, write_script, EvalArgs, FatalScanner,
};
use crate::shared::client::{client, connect};
use crate::shared::failure::{Failure, OTHER, PHP_FATAL};
use crate::shared::fpm_status;
use crate::shared::output::write_stdout;

/// Mode of the rendezvous directory: the pool's user must create entries.
const RENDEZVOUS_MODE: u32 = 0o777;

/// The header the wrapper names its worker in.
const PID_HEADER: &str = "X-Fcgi-Eval-Pid";
/// The header saying how the rendezvous went: `together`, `alone` (timed
/// out), `repeat` (this worker had run the code already).
const RENDEZVOUS_HEADER: &str = "X-Fcgi-Eval-Rendezvous";

/// The wrapper script; its settings come in params, so nothing is quoted
/// into PHP source.
const WRAPPER: &str = r#"<?php
$dir = $_SERVER['FCGI_EVAL_DIR'];
$expected = (int) $_SERVER['FCGI_EVAL_WORKERS'];
$deadline = microtime(true) + (float) $_SERVER['FCGI_EVAL_WAIT'];
$pid = getmypid();
header('X-Fcgi-Eval-Pid: ' . $pid);
if (!@mkdir($dir . '/worker-' . $pid)) {
    header('X-Fcgi-Eval-Rendezvous: repeat');
    return;
}
while (count(glob($dir . '/worker-*', GLOB_NOSORT | GLOB_ONLYDIR)) < $expected && microtime(true) < $deadline) {
    usleep(2000);
}
$together = count(glob($dir . '/worker-*', GLOB_NOSORT | GLOB_ONLYDIR)) >= $expected;
header('X-Fcgi-Eval-Rendezvous: ' . ($together ? 'together' : 'alone'));
unset($dir, $expected, $deadline, $pid, $together);
include $_SERVER['FCGI_EVAL_CODE'];
"#;

/// What one request found.
#[derive(Debug, Clone)]
struct WorkerRun {
    pid: Option<u32>,
    /// `ok`, `fatal`, `repeat` or `error`.
    status: &'static str,
    http_status: Option<u16>,
    rendezvous: String,
    output: String,
    stderr: String,
    error: Option<String>,
}

/// `fcgi eval --all-workers`.
pub fn run(args: &EvalArgs, address: Option<&str>, dir: &Path, code: &str) -> Result<(), Failure> {
    let (target, status_client) = connect(address, &args.conn)?;
    let page = fpm_status::fetch(&status_client, &args.status_path, true, args.conn.verbose)
        .map_err(|e| e.failure("status", &args.status_path, &target.address.to_string()))?;
    let pool = page.status;
    if !pool.is_static() && !args.dynamic {
        return Err(Failure::new(
            OTHER,
            format!(
                "pool {} is {} (pm = {}): its workers come and go, so no run can reach every worker; --dynamic runs the code in the {} workers there now and says which were reached",
                pool.pool, pool.process_manager, pool.process_manager, pool.total_processes
            ),
        ));
    }
    let expected = usize::try_from(pool.total_processes).unwrap_or(usize::MAX);
    if expected == 0 {
        return Err(Failure::new(
            OTHER,
            format!(
                "pool {} has no workers now (an ondemand pool at rest): nothing to run the code in",
                pool.pool
            ),
        ));
    }
    let listed: Vec<u32> = pool.processes.iter().map(|p| p.pid).collect();

    let code_file = write_script(dir, &wrap_code(code))?;
    let wrapper = write_script(dir, WRAPPER)?;
    let rendezvous = tempfile::Builder::new()
        .prefix("fcgi-eval-")
        .rand_bytes(super::NAME_RANDOM_CHARS)
        .tempdir_in(dir)
        .map_err(|e| {
            Failure::new(
                OTHER,
                format!(
                    "cannot create a directory in {} (check --tmp-dir): {e}",
                    dir.display()
                ),
            )
        })?;
    fs::set_permissions(rendezvous.path(), Permissions::from_mode(RENDEZVOUS_MODE)).map_err(
        |e| {
            Failure::new(
                OTHER,
                format!("cannot open the rendezvous directory to the pool: {e}"),
            )
        },
    )?;
    remove_on_interrupt(vec![
        code_file.path().to_path_buf(),
        wrapper.path().to_path_buf(),
        rendezvous.path().to_path_buf(),
    ])?;
    let prefix = args.chroot_prefix.as_deref();
    let wrapper_name = script_filename(wrapper.path(), prefix)?;
    let code_name = script_filename(code_file.path(), prefix)?;
    let rendezvous_name = script_filename(rendezvous.path(), prefix)?;
    let wait = format!("{:.3}", args.rendezvous_timeout.as_secs_f64());
    let expected_text = expected.to_string();

    let runs: Vec<WorkerRun> = thread::scope(|scope| {
        let handles: Vec<_> = (0..expected)
            .map(|_| {
                let request = script_request(&wrapper_name)
                    .param("FCGI_EVAL_DIR", rendezvous_name.as_str())
                    .param("FCGI_EVAL_WORKERS", expected_text.as_str())
                    .param("FCGI_EVAL_WAIT", wait.as_str())
                    .param("FCGI_EVAL_CODE", code_name.as_str());
                let client = client(&target, &args.conn, None);
                scope.spawn(move || match client {
                    Err(failure) => error_run(failure.message),
                    Ok(client) => match client.execute(request) {
                        Err(err) => error_run(Failure::from_fcgi(&err).message),
                        Ok(response) => worker_run(&response),
                    },
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| error_run("the request thread panicked".into()))
            })
            .collect()
    });
    drop((code_file, wrapper, rendezvous));

    if let Some(unknown) = runs.iter().find(|r| r.status == "unknown") {
        let _ = unknown;
        return Err(Failure::new(OTHER, script_unknown(&wrapper_name)));
    }
    let mut ran: Vec<u32> = runs
        .iter()
        .filter(|r| r.status == "ok" || r.status == "fatal")
        .filter_map(|r| r.pid)
        .collect();
    ran.sort_unstable();
    let missed: Vec<u32> = listed
        .iter()
        .copied()
        .filter(|p| !ran.contains(p))
        .collect();
    print_runs(args, &pool.pool, expected, &ran, &missed, &runs)?;

    let fatal = runs.iter().filter(|r| r.status == "fatal").count();
    let dynamic_note = if pool.is_static() {
        String::new()
    } else {
        format!(
            " ({} pool: workers started later did not run it)",
            pool.process_manager
        )
    };
    if ran.len() < expected || !missed.is_empty() {
        let missed_text = if missed.is_empty() {
            String::new()
        } else {
            format!(
                "; not reached: {}",
                missed
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Failure::new(
            OTHER,
            format!(
                "the code ran in {} of the {expected} workers of pool {}{missed_text} (a worker busy with another client for longer than --rendezvous-timeout, or one that ended meanwhile){dynamic_note}",
                ran.len(),
                pool.pool
            ),
        ));
    }
    if fatal > 0 {
        return Err(Failure::new(
            PHP_FATAL,
            format!("the PHP code stopped with a fatal error in {fatal} of {expected} workers; PHP's messages are above"),
        ));
    }
    if !dynamic_note.is_empty() {
        eprintln!("fcgi eval: ran in the {expected} workers there were{dynamic_note}");
    }
    Ok(())
}

fn error_run(message: String) -> WorkerRun {
    WorkerRun {
        pid: None,
        status: "error",
        http_status: None,
        rendezvous: String::new(),
        output: String::new(),
        stderr: String::new(),
        error: Some(message),
    }
}

fn worker_run(response: &fcgi::Response) -> WorkerRun {
    let header = |name: &str| response.headers.get(name).map(|v| v.trim().to_string());
    let pid = header(PID_HEADER).and_then(|p| p.parse().ok());
    let rendezvous = header(RENDEZVOUS_HEADER).unwrap_or_default();
    let mut fatal = FatalScanner::default();
    fatal.feed(&response.stderr);
    fatal.feed(&response.body);
    let status = if response.status == 404 && is_script_unknown(&response.stderr, &response.body) {
        "unknown"
    } else if rendezvous == "repeat" {
        "repeat"
    } else if response.status == 500 || fatal.found {
        "fatal"
    } else if pid.is_none() {
        "error"
    } else {
        "ok"
    };
    WorkerRun {
        pid,
        status,
        http_status: Some(response.status),
        rendezvous,
        output: String::from_utf8_lossy(&response.body).into_owned(),
        stderr: String::from_utf8_lossy(&response.stderr).into_owned(),
        error: (status == "error" && pid.is_none()).then(|| {
            format!(
                "answered {} {} without running the wrapper",
                response.status, response.reason
            )
        }),
    }
}

/// The output on one line: line breaks shown as `\n`.
fn one_line(text: &str) -> String {
    text.trim_end_matches('\n')
        .replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn print_runs(
    args: &EvalArgs,
    pool: &str,
    expected: usize,
    ran: &[u32],
    missed: &[u32],
    runs: &[WorkerRun],
) -> Result<(), Failure> {
    let mut sorted: Vec<&WorkerRun> = runs.iter().collect();
    sorted.sort_by_key(|r| r.pid.unwrap_or(u32::MAX));
    let text = if args.json {
        let workers: Vec<serde_json::Value> = sorted
            .iter()
            .map(|r| {
                json!({
                    "pid": r.pid,
                    "status": r.status,
                    "http_status": r.http_status,
                    "rendezvous": r.rendezvous,
                    "output": r.output,
                    "stderr": r.stderr,
                    "error": r.error,
                })
            })
            .collect();
        format!(
            "{}\n",
            json!({
                "pool": pool,
                "workers_expected": expected,
                "workers_reached": ran.len(),
                "not_reached": missed,
                "workers": workers,
            })
        )
    } else {
        let mut out = String::new();
        for r in &sorted {
            let pid = r.pid.map_or("-".to_string(), |p| p.to_string());
            let detail = match (&r.error, r.status) {
                (Some(e), _) => e.clone(),
                (None, "repeat") => "this worker had run the code already: not run again".into(),
                (None, _) => {
                    let mut d = one_line(&r.output);
                    if r.status == "fatal" {
                        d = format!("{} {}", one_line(&r.stderr), d).trim().to_string();
                    }
                    d
                }
            };
            out.push_str(&format!("{pid:>7} {:<6} {detail}\n", r.status));
        }
        out
    };
    write_stdout(text.as_bytes(), "the results to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_shown_on_one_line() {
        assert_eq!(one_line("a\nb\n"), "a\\nb");
        assert_eq!(one_line("x\\y\r\n"), "x\\\\y\\r");
    }
}
