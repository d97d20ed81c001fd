//! `fcgi completions SHELL` and `fcgi man`: the scripts are valid and
//! complete every command, the manual pages render with groff.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::fcgi;

/// Every subcommand, in `fcgi --help` order.
const COMMANDS: [&str; 12] = [
    "request",
    "ping",
    "status",
    "health",
    "doctor",
    "values",
    "eval",
    "bench",
    "serve",
    "exporter",
    "completions",
    "man",
];

/// Fails (never skips) when `tool` is not installed, saying how to get it.
fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{tool} is needed for this test: apt-get install -y {package}"
    );
}

/// `fcgi completions SHELL`'s script, checked to succeed quietly.
fn completions(shell: &str) -> String {
    let run = fcgi(&["completions", shell]);
    run.expect_code(0);
    assert!(run.stderr.is_empty(), "{shell}: {}", run.stderr);
    run.stdout_text()
}

/// What bash's completion offers for the words typed so far (the last one
/// being completed), using the script's own completion function.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let words_array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.last().unwrap();
    let previous = words[words.len() - 2];
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _fcgi fcgi '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_array.join(" "),
        words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_script_is_valid_and_completes_every_command_and_option() {
    require("bash", "bash");
    let script = completions("bash");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fcgi.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let offered = bash_completes(&path, &["fcgi", ""]);
    for command in COMMANDS {
        assert!(
            offered.iter().any(|o| o == command),
            "{command} not offered: {offered:?}"
        );
    }
    let options = bash_completes(&path, &["fcgi", "bench", "--con"]);
    assert_eq!(options, ["--connections", "--connect-timeout"]);
}

#[test]
fn zsh_fish_elvish_and_powershell_scripts_name_every_command() {
    let zsh = completions("zsh");
    assert!(zsh.starts_with("#compdef fcgi"), "{zsh}");
    let fish = completions("fish");
    let elvish = completions("elvish");
    let powershell = completions("powershell");
    for command in COMMANDS {
        assert!(
            zsh.lines().any(|l| l.starts_with(&format!("'{command}:"))),
            "zsh: {command}"
        );
        assert!(
            fish.contains(&format!("__fish_fcgi_needs_command\" -f -a \"{command}\"")),
            "fish: {command}"
        );
        assert!(
            elvish.contains(&format!("cand {command} '")),
            "elvish: {command}"
        );
        assert!(
            powershell.contains(&format!("[CompletionResult]::new('{command}'")),
            "powershell: {command}"
        );
    }
}

/// `page` rendered by groff, checked to render without a warning.
fn render(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(page)
        .output()
        .expect("run groff");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.is_empty(),
        "{}: {warnings}",
        page.display()
    );
    // Bold and underlined letters are overstruck: keep the letters.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text
}

#[test]
fn the_manual_page_lists_every_command_and_renders() {
    require("groff", "groff-base");
    let run = fcgi(&["man"]);
    run.expect_code(0);
    let roff = run.stdout_text();
    assert!(roff.starts_with(".TH fcgi 1 "), "{roff}");
    for command in COMMANDS {
        assert!(roff.contains(&format!("fcgi\\-{command}(1)")), "{command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fcgi.1");
    std::fs::write(&page, &roff).unwrap();
    let text = render(&page);
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    // The examples stay one per line, not filled into a paragraph.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let examples = lines.iter().position(|l| *l == "Examples:").unwrap();
    assert_eq!(lines[examples + 1], "fcgi request /var/www/html/index.php");
    assert_eq!(lines[examples + 4], "fcgi status --full");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.join(" ").contains("Exit codes: 0 success"), "{text}");
}

#[test]
fn man_dir_writes_a_page_per_command_and_each_renders() {
    require("groff", "groff-base");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("man1");
    let run = fcgi(&["man", "--dir", target.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(run.stdout_text().lines().count(), COMMANDS.len() + 1);
    render(&target.join("fcgi.1"));
    for command in COMMANDS {
        let page = target.join(format!("fcgi-{command}.1"));
        let text = render(&page);
        assert!(
            text.contains(&format!("fcgi {command}")),
            "{command}: {text}"
        );
        assert!(text.contains("OPTIONS"), "{command}: {text}");
    }
    let request = render(&target.join("fcgi-request.1"));
    assert!(request.contains("--document-root"), "{request}");
    assert!(request.contains("Roles: --role authorizer"), "{request}");
}

#[test]
fn man_pages_open_with_man() {
    require("man", "man-db");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fcgi-serve.1");
    std::fs::write(&page, fcgi(&["man", "serve"]).stdout).unwrap();
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("run man");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("fcgi-serve"), "{text}");
}

#[test]
fn an_unknown_shell_or_command_is_a_usage_error_naming_the_known_ones() {
    let cases: [(&[&str], &str); 3] = [
        (&["completions", "tcsh"], "possible values: bash"),
        (&["man", "nope"], "request, ping, status"),
        (&["man", "request", "--dir", "/tmp"], "--dir"),
    ];
    for (args, expected) in cases {
        let run = fcgi(args);
        let line = run.expect_code(2);
        assert!(line.contains(expected), "{args:?}: {line}");
        assert!(run.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_says_how_to_install() {
    let completions = fcgi(&["completions", "--help"]).stdout_text();
    assert!(
        completions
            .contains("fcgi completions bash > ~/.local/share/bash-completion/completions/fcgi"),
        "{completions}"
    );
    let man = fcgi(&["man", "--help"]).stdout_text();
    assert!(
        man.contains("fcgi man > ~/.local/share/man/man1/fcgi.1"),
        "{man}"
    );
    assert!(
        man.contains("fcgi man --dir ~/.local/share/man/man1"),
        "{man}"
    );
}
