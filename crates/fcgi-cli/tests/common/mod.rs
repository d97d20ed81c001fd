//! Running the built `fcgi` binary and checking its exit code and output.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;

/// What one run of `fcgi` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout_text()))
    }

    /// Asserts the exit code, and for failures that standard error holds
    /// exactly one `fcgi: error: ` line, as its last line; returns that line.
    pub fn expect_code(&self, code: i32) -> String {
        assert_eq!(
            self.code,
            code,
            "exit code; stderr: {}\nstdout: {}",
            self.stderr,
            self.stdout_text()
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("fcgi: error: "))
            .collect();
        if code == 0 {
            assert!(errors.is_empty(), "no error line expected: {}", self.stderr);
            return String::new();
        }
        assert_eq!(errors.len(), 1, "one error line expected: {}", self.stderr);
        assert_eq!(
            self.stderr.lines().last(),
            Some(errors[0]),
            "the error line comes last: {}",
            self.stderr
        );
        errors[0].to_string()
    }
}

/// Runs `fcgi ARGS` with no standard input.
pub fn fcgi(args: &[&str]) -> Run {
    fcgi_with(args, Stdio::null(), None, &[])
}

/// Runs `fcgi ARGS` with `stdin`, optionally writing `feed` into a pipe, and
/// extra environment variables.
pub fn fcgi_with(args: &[&str], stdin: Stdio, feed: Option<Vec<u8>>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fcgi"));
    cmd.args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run the fcgi binary");
    let writer = feed.map(|bytes| {
        let mut pipe = child.stdin.take().expect("a stdin pipe");
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = child.wait_with_output().expect("wait for fcgi");
    if let Some(w) = writer {
        let _ = w.join();
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
