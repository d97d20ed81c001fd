//! `fcgi eval`: run PHP code inside a php-fpm pool (where opcache and APCu
//! live), as cachetool does: the code goes to a temporary file the pool can
//! read, that file is requested, what the code printed goes to standard
//! output and PHP's errors to standard error, and the file is removed (a
//! guard removes it on every path, errors and time-outs included).
//!
//! `--all-workers` runs the code once in every worker of the pool instead
//! ([`all_workers`]).

mod all_workers;

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use fcgi::{Chunk, Request};
use tempfile::NamedTempFile;

use crate::shared::client::client;
use crate::shared::failure::{Failure, OTHER, PHP_FATAL};
use crate::shared::options::ConnArgs;
use crate::shared::output::{write_failure, ServerStderr};
use crate::shared::spawn::{Server, SpawnArgs};
use crate::shared::target::looks_like_address;
use crate::shared::verbose::{print_head, print_params};

/// Mode of the temporary script: readable by the pool's user.
pub const SCRIPT_MODE: u32 = 0o644;

/// Random characters in the temporary script's name.
pub const NAME_RANDOM_CHARS: usize = 24;

/// The opening tag added when the code has none.
const OPEN_TAG: &str = "<?php";

/// What PHP writes for an error that stops the script: on stderr (log) and,
/// with display_errors on, in the output (plain or HTML).
const FATAL_MARKERS: [&[u8]; 6] = [
    b"PHP Fatal error:",
    b"PHP Parse error:",
    b"Fatal error: ",
    b"Parse error: ",
    b"Fatal error</b>:",
    b"Parse error</b>:",
];

/// Bytes kept from one chunk to the next so a marker split across two
/// chunks is still found.
const MARKER_CARRY: usize = 32;

const EVAL_HELP: &str = "\
The code is written to a temporary file (mode 0644, an unguessable name) in
--tmp-dir (default: the system's temporary directory), which the pool must be
able to read: php-fpm run by systemd often has a private /tmp, so give
--tmp-dir /var/tmp or a directory under the pool's document root. For a
chrooted pool, --chroot-prefix PREFIX is stripped from the file's path to
make SCRIPT_FILENAME (--tmp-dir must then be inside the chroot). `<?php` is
added when the code does not start with it. The file is removed afterwards,
also on errors and time-outs, and on Ctrl-C, SIGTERM or SIGHUP (exit code
128 + the signal's number).

What the code prints goes to standard output; PHP's errors (the FastCGI
stderr, and the body of a 500 answer) to standard error. Exit 9 on a PHP
fatal or parse error (status 500, or PHP reporting one on stderr or in the
output).

Examples:
  fcgi eval 'var_dump(opcache_get_status(false));'
  fcgi eval 127.0.0.1:9000 'echo ini_get(\"memory_limit\");'
  fcgi eval unix:/run/php/php8.2-fpm.sock -f warmup.php --tmp-dir /var/tmp
  fcgi eval --chroot-prefix /srv/chroot --tmp-dir /srv/chroot/tmp 'apcu_clear_cache();'
  fcgi eval --spawn php-cgi 'echo PHP_VERSION;'
  fcgi eval --all-workers 'opcache_reset(); echo \"reset\";'

--all-workers runs the code once in every worker of the pool: opcache,
APCu and the stat cache live in each worker, so opcache_reset(),
apcu_clear_cache() or clearstatcache() reach only the worker that runs
them. The pool's size is read from its status page (--status-path), as many
requests are sent at once, and each waits (up to --rendezvous-timeout) until
all have arrived before running the code, so no worker can take two; a
worker that gets a second one anyway does not run the code again. One line
per worker: its pid, ok or fatal (or the error), and what the code printed;
--json prints one object with a `workers` table. Exit 0 when every worker
ran the code, 9 when it failed with a fatal error in one of them, 1 when
some worker was not reached (a busy one: it is named). Only for static pools
(pm = static): in a dynamic or ondemand pool workers come and go, so it
refuses unless --dynamic, which runs the code in the workers there now and
says so.";

/// `fcgi eval`.
#[derive(Debug, Args)]
#[command(
    override_usage = "fcgi eval [OPTIONS] [ADDR] 'PHP CODE'\n       fcgi eval [OPTIONS] [ADDR] -f FILE",
    after_help = EVAL_HELP
)]
pub struct EvalArgs {
    /// [ADDR] 'PHP CODE' (with -f: [ADDR] only). ADDR is discovered when
    /// left out, as for `fcgi request`.
    #[arg(value_name = "ARGS", num_args = 0..=2)]
    pub positional: Vec<String>,

    /// Run the code in FILE (`-` for standard input) instead.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Directory for the temporary script; the pool must be able to read it.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,

    /// For a chrooted pool: the chroot's path, stripped from the temporary
    /// script's path to make SCRIPT_FILENAME.
    #[arg(long, value_name = "PREFIX")]
    pub chroot_prefix: Option<PathBuf>,

    #[command(flatten)]
    pub spawn: SpawnArgs,

    /// Run the code once in every worker of the pool (see below).
    #[arg(long)]
    pub all_workers: bool,

    /// With --all-workers: print one JSON object with a `workers` table.
    #[arg(long, requires = "all_workers")]
    pub json: bool,

    /// With --all-workers: also in a dynamic or ondemand pool, in the
    /// workers there now.
    #[arg(long, requires = "all_workers")]
    pub dynamic: bool,

    /// With --all-workers: the status page (php-fpm's pm.status_path) that
    /// gives the pool's workers.
    #[arg(long, default_value = crate::shared::fpm_status::DEFAULT_STATUS_PATH, value_name = "PATH")]
    pub status_path: String,

    /// With --all-workers: how long a request waits for the others before
    /// running the code anyway (500ms, 5s...).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::shared::options::parse_duration)]
    pub rendezvous_timeout: std::time::Duration,

    #[command(flatten)]
    pub conn: ConnArgs,
}

/// ADDR (if given) and the code, from the positionals and `-f`.
fn split_args(args: &EvalArgs) -> Result<(Option<&str>, String), Failure> {
    if let Some(file) = &args.file {
        let address = match args.positional.as_slice() {
            [] => None,
            [address] => Some(address.as_str()),
            _ => {
                return Err(Failure::usage(
                    "with -f FILE give at most ADDR, not PHP code too",
                ))
            }
        };
        return Ok((address, read_code(file)?));
    }
    match args.positional.as_slice() {
        [] => Err(Failure::usage(
            "give the PHP code to run, or -f FILE (see `fcgi eval --help`)",
        )),
        [code] if looks_like_address(code) && args.spawn.spawn.is_none() => {
            Err(Failure::usage(format!(
                "{code:?} is an address, but the PHP CODE is missing: give both, as in `fcgi eval {code} 'echo PHP_VERSION;'`"
            )))
        }
        [code] => Ok((None, code.clone())),
        [address, code] => Ok((Some(address.as_str()), code.clone())),
        _ => Err(Failure::usage("give [ADDR] 'PHP CODE' or [ADDR] -f FILE")),
    }
}

fn read_code(file: &Path) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let result = if file == Path::new("-") {
        io::stdin().lock().read_to_end(&mut bytes)
    } else {
        File::open(file).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    result.map_err(|e| {
        Failure::usage(format!(
            "cannot read the PHP file {} given with -f: {e}",
            file.display()
        ))
    })?;
    String::from_utf8(bytes).map_err(|_| {
        Failure::usage(format!(
            "the PHP file {} given with -f is not UTF-8 text",
            file.display()
        ))
    })
}

/// The code as a PHP file: `<?php` is added unless the code starts with it.
pub fn wrap_code(code: &str) -> String {
    let starts_with_tag = code
        .trim_start()
        .get(..OPEN_TAG.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(OPEN_TAG));
    if starts_with_tag {
        code.to_string()
    } else {
        format!("{OPEN_TAG}\n{code}\n")
    }
}

/// SCRIPT_FILENAME for `path`: the path itself, or with `prefix` stripped.
pub fn script_filename(path: &Path, prefix: Option<&Path>) -> Result<String, Failure> {
    let Some(prefix) = prefix else {
        return Ok(path.display().to_string());
    };
    let rest = path.strip_prefix(prefix).map_err(|_| {
        Failure::usage(format!(
            "the temporary script {} is not under --chroot-prefix {}: give a --tmp-dir inside the chroot",
            path.display(),
            prefix.display()
        ))
    })?;
    Ok(Path::new("/").join(rest).display().to_string())
}

/// Writes the code to a fresh temporary file in `dir`, readable by others.
/// The returned handle removes the file when dropped.
fn write_script(dir: &Path, code: &str) -> Result<NamedTempFile, Failure> {
    let fail = |what: &str, e: io::Error| {
        Failure::new(
            OTHER,
            format!(
                "cannot {what} a temporary script in {} (check --tmp-dir): {e}",
                dir.display()
            ),
        )
    };
    let mut file = tempfile::Builder::new()
        .prefix("fcgi-eval-")
        .suffix(".php")
        .rand_bytes(NAME_RANDOM_CHARS)
        .tempfile_in(dir)
        .map_err(|e| fail("create", e))?;
    file.write_all(code.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| fail("write", e))?;
    fs::set_permissions(file.path(), Permissions::from_mode(SCRIPT_MODE))
        .map_err(|e| fail("make readable", e))?;
    Ok(file)
}

/// The temporary directory as an absolute path (the pool needs one).
fn tmp_dir(args: &EvalArgs) -> Result<PathBuf, Failure> {
    let dir = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    if dir.is_absolute() {
        return Ok(dir);
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&dir))
        .map_err(|e| Failure::new(OTHER, format!("cannot find the current directory: {e}")))
}

/// Finds [`FATAL_MARKERS`] in a stream of chunks.
#[derive(Debug, Default)]
struct FatalScanner {
    carry: Vec<u8>,
    found: bool,
}

impl FatalScanner {
    fn feed(&mut self, bytes: &[u8]) {
        if self.found || bytes.is_empty() {
            return;
        }
        self.carry.extend_from_slice(bytes);
        self.found = FATAL_MARKERS
            .iter()
            .any(|m| self.carry.windows(m.len()).any(|w| w == *m));
        let keep = self.carry.len().min(MARKER_CARRY);
        self.carry.drain(..self.carry.len() - keep);
    }
}

/// `fcgi eval`.
pub fn run(args: &EvalArgs) -> Result<(), Failure> {
    let (address, code) = split_args(args)?;
    if let (Some(_), Some(address)) = (&args.spawn.spawn, address) {
        return Err(Failure::usage(format!(
            "ADDR {address:?} cannot be given with --spawn (the spawned application listens on a socket of its own)"
        )));
    }
    let dir = tmp_dir(args)?;
    // Checked before the file exists, so a bad prefix leaves nothing behind.
    script_filename(&dir.join("x.php"), args.chroot_prefix.as_deref())?;
    if args.all_workers {
        if args.spawn.spawn.is_some() {
            return Err(Failure::usage(
                "--all-workers needs a php-fpm pool (its status page), not --spawn",
            ));
        }
        return all_workers::run(args, address, &dir, &code);
    }
    let script = write_script(&dir, &wrap_code(&code))?;
    remove_on_interrupt(vec![script.path().to_path_buf()])?;
    let filename = script_filename(script.path(), args.chroot_prefix.as_deref())?;
    let mut server = Server::open(&args.spawn, address)?;
    let result = run_script(args, &server, &filename);
    server.stop();
    drop(script);
    result
}

/// Removes `paths` (files, or directories with what is in them) and exits
/// with 128 + the signal's number when SIGINT, SIGTERM or SIGHUP arrives
/// before `fcgi eval` ends (normal ends, errors and timeouts remove the
/// files through their guards): the temporary scripts must not outlive the
/// command. The handlers are in place when this returns.
fn remove_on_interrupt(paths: Vec<PathBuf>) -> Result<(), Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let failed = |e: io::Error| Failure::new(OTHER, format!("cannot watch for signals: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(failed)?;
    let (mut interrupt, mut terminate, mut hangup) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt()).map_err(failed)?,
            signal(SignalKind::terminate()).map_err(failed)?,
            signal(SignalKind::hangup()).map_err(failed)?,
        )
    };
    std::thread::Builder::new()
        .name("eval-signals".into())
        .spawn(move || {
            let code = runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => 128 + 2,
                    _ = terminate.recv() => 128 + 15,
                    _ = hangup.recv() => 128 + 1,
                }
            });
            for path in &paths {
                if path.is_dir() {
                    let _ = fs::remove_dir_all(path);
                } else {
                    let _ = fs::remove_file(path);
                }
            }
            std::process::exit(code);
        })
        .map_err(failed)?;
    Ok(())
}

/// Runs the temporary script `filename` once: its output to standard
/// output (a 500's error page to standard error), a fatal error to
/// [`PHP_FATAL`].
fn run_script(args: &EvalArgs, server: &Server, filename: &str) -> Result<(), Failure> {
    let client = client(&server.target, &args.conn, None)?;
    let request = script_request(filename);
    if args.conn.verbose {
        print_params(&request);
    }
    let mut stream = client.stream(request)?;
    let (status, reason) = (stream.status(), stream.reason().to_string());
    if args.conn.verbose {
        print_head(status, &reason, stream.headers());
    }
    let mut fatal = FatalScanner::default();
    let mut stderr_text = Vec::new();
    let mut stderr = ServerStderr::new(false);
    fatal.feed(stream.stderr());
    stderr_text.extend_from_slice(stream.stderr());
    stderr.write(stream.stderr());
    // A 500's body is PHP's error page: it goes to standard error.
    let body_to_stderr = status == 500;
    let mut not_found = Vec::new();
    let what = "the output to standard output";
    let mut out = io::stdout().lock();
    while let Some(chunk) = stream.next_chunk()? {
        match chunk {
            Chunk::Body(bytes) => {
                fatal.feed(bytes);
                if status == 404 {
                    not_found.extend_from_slice(bytes);
                } else if body_to_stderr {
                    stderr.write(bytes);
                } else {
                    out.write_all(bytes).map_err(write_failure(what))?;
                }
            }
            Chunk::Stderr(bytes) => {
                fatal.feed(bytes);
                if stderr_text.len() < MAX_STDERR_KEPT {
                    stderr_text.extend_from_slice(bytes);
                }
                stderr.write(bytes);
            }
        }
    }
    out.flush().map_err(write_failure(what))?;
    if status == 404 && is_script_unknown(&stderr_text, &not_found) {
        return Err(Failure::new(OTHER, script_unknown(filename)));
    }
    if status == 404 {
        out.write_all(&not_found).map_err(write_failure(what))?;
        out.flush().map_err(write_failure(what))?;
    }
    if status == 500 || fatal.found {
        let why = if status == 500 {
            format!("status {status} {reason}")
        } else {
            "PHP reported it".to_string()
        };
        return Err(Failure::new(
            PHP_FATAL,
            format!("the PHP code stopped with a fatal error ({why}); PHP's message is above"),
        ));
    }
    Ok(())
}

/// The request that runs the temporary script `filename`.
fn script_request(filename: &str) -> Request {
    let document_root = Path::new(filename)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    Request::get(filename)
        .param("DOCUMENT_ROOT", document_root)
        .param("SERVER_SOFTWARE", crate::cgi::SERVER_SOFTWARE)
        .param("REMOTE_ADDR", "127.0.0.1")
        .param("SERVER_ADDR", "127.0.0.1")
        .param("SERVER_NAME", "localhost")
        .param("HTTP_HOST", "localhost")
}

/// The message for a pool that cannot see the temporary script.
fn script_unknown(filename: &str) -> String {
    format!(
        "the pool cannot find the temporary script {filename}: it must be able to read --tmp-dir (php-fpm run by systemd often has a private /tmp: try --tmp-dir /var/tmp), and a chrooted pool needs --chroot-prefix"
    )
}

/// How much of PHP's stderr is kept to recognise a missing script.
const MAX_STDERR_KEPT: usize = 64 * 1024;

/// php-fpm's answer for a SCRIPT_FILENAME it cannot open.
fn is_script_unknown(stderr: &[u8], body: &[u8]) -> bool {
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    contains(stderr, b"Primary script unknown") || body.starts_with(b"File not found.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_without_an_opening_tag_gets_one() {
        assert_eq!(wrap_code("echo 1;"), "<?php\necho 1;\n");
        assert_eq!(wrap_code("<?php echo 1;"), "<?php echo 1;");
        assert_eq!(wrap_code("  <?PHP\necho 1;"), "  <?PHP\necho 1;");
        assert_eq!(wrap_code(""), "<?php\n\n");
    }

    #[test]
    fn the_chroot_prefix_is_stripped_from_script_filename() {
        let path = Path::new("/srv/jail/tmp/fcgi-eval-x.php");
        assert_eq!(
            script_filename(path, None).unwrap(),
            path.display().to_string()
        );
        assert_eq!(
            script_filename(path, Some(Path::new("/srv/jail"))).unwrap(),
            "/tmp/fcgi-eval-x.php"
        );
        assert_eq!(
            script_filename(path, Some(Path::new("/srv/jail/"))).unwrap(),
            "/tmp/fcgi-eval-x.php"
        );
        let err = script_filename(path, Some(Path::new("/other"))).unwrap_err();
        assert_eq!(err.code, crate::shared::failure::USAGE);
    }

    #[test]
    fn fatal_markers_are_found_across_chunks() {
        let mut scanner = FatalScanner::default();
        scanner.feed(b"output ... PHP Fat");
        assert!(!scanner.found);
        scanner.feed(b"al error:  Uncaught Error");
        assert!(scanner.found);
        let mut scanner = FatalScanner::default();
        scanner.feed(b"PHP Warning:  Undefined variable $x");
        assert!(!scanner.found);
    }

    #[test]
    fn the_temporary_script_is_readable_by_others_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let script = write_script(dir.path(), "<?php echo 1;").unwrap();
        let path = script.path().to_path_buf();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("fcgi-eval-") && name.ends_with(".php"),
            "{name}"
        );
        assert_eq!(name.len(), "fcgi-eval-.php".len() + NAME_RANDOM_CHARS);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SCRIPT_MODE);
        drop(script);
        assert!(!path.exists());
    }
}
