//! The PHP test scripts (from `crates/fcgi-testkit/php/`), embedded at compile
//! time and written into every [`PhpFpm`](crate::PhpFpm) document root.
//!
//! Output formats are documented at the top of each script and in the
//! constants below.

/// `hello.php`: body exactly `Hello, World!`, `Content-Type: text/plain`.
pub const HELLO: &str = "hello.php";
/// `server.php`: JSON `{"server":{..},"get":{..},"post":{..},"input_len":N}`.
pub const SERVER: &str = "server.php";
/// `input_hash.php`: streams php://input, JSON `{"len":N,"sha256":"HEX"}`.
pub const INPUT_HASH: &str = "input_hash.php";
/// `output.php?bytes=N`: N pattern bytes (see [`crate::pattern()`]), header `X-Bytes: N`.
pub const OUTPUT: &str = "output.php";
/// `big_then_read.php?out=N`: N pattern bytes first, then reads the whole body,
/// then `"\nINPUT len=LEN sha256=HEX"`.
pub const BIG_THEN_READ: &str = "big_then_read.php";
/// `headers.php[?status=NNN][&location=URL]`: `Set-Cookie: a=1`, `Set-Cookie: b=2`,
/// `X-Custom: yes`, body `headers`.
pub const HEADERS: &str = "headers.php";
/// `stderr.php`: STDERR gets `message from stderr` and `warning from stderr`; body `ok`.
pub const STDERR: &str = "stderr.php";
/// `sleep.php?ms=N`: sleeps, body `slept`.
pub const SLEEP: &str = "sleep.php";
/// `tick.php?file=PATH[&count=C]`: appends and echoes `tick N\n` every 100 ms.
pub const TICK: &str = "tick.php";
/// `exit.php?code=N`: body `exiting with N`, then `exit(N)`.
pub const EXIT: &str = "exit.php";
/// `fatal.php`: PHP fatal error (undefined function): status 500, message on STDERR.
pub const FATAL: &str = "fatal.php";
/// `params.php`: JSON `{"P_..": [len, "sha256"], "X_..": [..]}` of every `$_SERVER` key starting with `X_`/`P_`, keys sorted.
pub const PARAMS: &str = "params.php";
/// `careless.php?status=TEXT&h[]=LINE&cl=N&body=TEXT&repeat=K`: sends the
/// `Status`, header lines and `Content-Length` it is given (true or not),
/// then TEXT (default `0123456789`) K times.
pub const CARELESS: &str = "careless.php";
/// `lib.php`: functions the scripts above share (`write_pattern`, `hash_input`); outputs nothing.
pub const LIB: &str = "lib.php";

/// Every embedded script as `(file name, source)`.
pub const ALL: &[(&str, &str)] = &[
    (LIB, include_str!("../php/lib.php")),
    (HELLO, include_str!("../php/hello.php")),
    (SERVER, include_str!("../php/server.php")),
    (INPUT_HASH, include_str!("../php/input_hash.php")),
    (OUTPUT, include_str!("../php/output.php")),
    (BIG_THEN_READ, include_str!("../php/big_then_read.php")),
    (HEADERS, include_str!("../php/headers.php")),
    (STDERR, include_str!("../php/stderr.php")),
    (SLEEP, include_str!("../php/sleep.php")),
    (TICK, include_str!("../php/tick.php")),
    (EXIT, include_str!("../php/exit.php")),
    (FATAL, include_str!("../php/fatal.php")),
    (PARAMS, include_str!("../php/params.php")),
    (CARELESS, include_str!("../php/careless.php")),
];

/// Source of the embedded script `name`, if there is one.
pub fn source(name: &str) -> Option<&'static str> {
    ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
