//! A real PHP application from Debian's packages, DokuWiki (package
//! `dokuwiki`, installed by scripts/ensure-deps.sh), served by `fcgi serve`
//! from /usr/share/dokuwiki with a private php-fpm: pages and assets render,
//! the login form round-trips with the session cookie, and a page edited
//! through the edit form (its security token is bound to the session) is
//! saved and shown.
//!
//! Hermetic: the package's configuration (/etc/dokuwiki) and data
//! (/var/lib/dokuwiki/data) are copied into a temporary directory, and
//! php-fpm's `auto_prepend_file` points DokuWiki at the copy (DOKU_CONF),
//! with a test user of its own. Nothing of the installed package changes.
//!
//! Skipped (with a message) when DokuWiki is not installed, unless
//! FCGI_TEST_REQUIRE_DOKUWIKI=1, which makes that a failure (CI sets it).

mod serve_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;
use fcgi_testkit::PhpFpm;
use http::Request;
use http_body_util::Full;
use serve_support::{collect, send, Server};

const DOKUWIKI: &str = "/usr/share/dokuwiki";
const CONF: &str = "/etc/dokuwiki";
const DATA: &str = "/var/lib/dokuwiki/data";
const USER: &str = "tester";
const PASSWORD: &str = "fcgi-serve-test";
/// bcrypt of PASSWORD (DokuWiki's authplain accepts `$2y$` hashes).
const PASSWORD_HASH: &str = "$2y$10$rIkNAkd0PvyIrtuJAZgda.cegq4obdiJkzMW6eRTFL8jncxfXEKza";

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        // Follows symbolic links (acl.auth.php and users.auth.php are links).
        let meta = fs::metadata(entry.path()).unwrap();
        if meta.is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Cookies by name, from Set-Cookie headers.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, headers: &http::HeaderMap) {
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                if value == "deleted" {
                    self.0.remove(name.trim());
                } else {
                    self.0.insert(name.trim().to_string(), value.to_string());
                }
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| format!("{}={}", urlencode(n), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the input named `name` after `marker` in `html`.
fn input_value(html: &str, marker: &str, name: &str) -> String {
    let from = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the page"));
    let needle = format!("name=\"{name}\" value=\"");
    let at = html[from..]
        .find(&needle)
        .unwrap_or_else(|| panic!("no input {name} after {marker}"))
        + from
        + needle.len();
    let end = html[at..].find('"').unwrap() + at;
    html[at..end].to_string()
}

struct Browser<'a> {
    server: &'a Server,
    jar: Jar,
}

impl Browser<'_> {
    async fn get(&mut self, path: &str) -> (http::response::Parts, String) {
        let request = Request::get(path)
            .header("host", format!("127.0.0.1:{}", self.server.addr.port()))
            .header("cookie", self.jar.header())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (head, body) = collect(send(self.server.addr, request).await).await;
        self.jar.take(&head.headers);
        (head, String::from_utf8_lossy(&body).into_owned())
    }

    async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (http::response::Parts, String) {
        let request = Request::post(path)
            .header("host", format!("127.0.0.1:{}", self.server.addr.port()))
            .header("cookie", self.jar.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form(fields))))
            .unwrap();
        let (head, body) = collect(send(self.server.addr, request).await).await;
        self.jar.take(&head.headers);
        (head, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn dokuwiki_renders_logs_in_and_saves_an_edit() {
    if !Path::new(DOKUWIKI).join("doku.php").is_file() {
        let msg =
            "DokuWiki is not installed (apt-get install dokuwiki; scripts/ensure-deps.sh does it)";
        if std::env::var_os("FCGI_TEST_REQUIRE_DOKUWIKI").is_some_and(|v| v == "1") {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let data = tmp.path().join("data");
    copy_tree(Path::new(CONF), &conf);
    copy_tree(Path::new(DATA), &data);
    fs::write(
        conf.join("users.auth.php"),
        format!("{USER}:{PASSWORD_HASH}:Test User:tester@example.com:admin,user\n"),
    )
    .unwrap();
    fs::write(conf.join("acl.auth.php"), "*\t@ALL\t1\n*\t@user\t8\n").unwrap();
    let mut local = fs::read_to_string(conf.join("local.php")).unwrap_or_else(|_| "<?php\n".into());
    local.push_str(&format!("\n$conf['savedir'] = '{}';\n", data.display()));
    fs::write(conf.join("local.php"), local).unwrap();
    let preload = tmp.path().join("preload.php");
    fs::write(
        &preload,
        format!(
            "<?php if (!defined('DOKU_CONF')) define('DOKU_CONF', '{}/');\n",
            conf.display()
        ),
    )
    .unwrap();
    let fpm = PhpFpm::builder()
        .ini("auto_prepend_file", preload.to_str().unwrap())
        .start();
    let upstream = fpm.tcp_address();
    let server = Server::start(&["--root", DOKUWIKI, "--upstream", &upstream]);
    let mut browser = Browser {
        server: &server,
        jar: Jar::default(),
    };

    // Pages and assets render.
    let (head, _) = browser.get("/").await;
    assert_eq!(head.status, 302, "index.php sends browsers to doku.php");
    assert!(head.headers["location"]
        .to_str()
        .unwrap()
        .contains("doku.php"));
    let (head, html) = browser.get("/doku.php").await;
    assert_eq!(head.status, 200, "{html}");
    assert!(
        html.contains("<title>") && html.contains("DokuWiki"),
        "{html}"
    );
    let (head, css) = browser.get("/lib/exe/css.php?t=dokuwiki").await;
    assert_eq!(head.status, 200);
    assert!(head.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.len() > 1000);
    // A static file, reached through the package's symbolic link to /var/lib.
    let (head, _) = browser.get("/lib/tpl/dokuwiki/images/logo.png").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-type"], "image/png");
    let size = fs::metadata(Path::new(DOKUWIKI).join("lib/tpl/dokuwiki/images/logo.png"))
        .unwrap()
        .len();
    assert_eq!(head.headers["content-length"], size.to_string().as_str());
    // DokuWiki's configuration is outside the root; its own .htaccess is hidden.
    let (head, _) = browser.get("/.htaccess").await;
    assert_eq!(head.status, 404);

    // The login form round-trips with the session cookie.
    let (head, html) = browser.get("/doku.php?id=start&do=login").await;
    assert_eq!(head.status, 200);
    assert!(browser.jar.0.contains_key("DokuWiki"), "session cookie set");
    let sectok = input_value(&html, "id=\"dw__login\"", "sectok");
    let (head, _) = browser
        .post(
            "/doku.php?id=start",
            &[
                ("sectok", &sectok),
                ("id", "start"),
                ("do", "login"),
                ("u", USER),
                ("p", PASSWORD),
            ],
        )
        .await;
    assert_eq!(head.status, 302, "a successful login redirects");
    let (_, html) = browser.get("/doku.php?id=start").await;
    assert!(html.contains("Test User"), "logged in: {html}");

    // An edit, whose token is bound to the session, is saved and shown.
    let (head, html) = browser.get("/doku.php?id=fcgi_serve_test&do=edit").await;
    assert_eq!(head.status, 200);
    let field = |name| input_value(&html, "id=\"dw__editform\"", name);
    let (sectok, changecheck, prefix) = (field("sectok"), field("changecheck"), field("prefix"));
    let text = "Served by **fcgi serve** through php-fpm.";
    let (head, _) = browser
        .post(
            "/doku.php?id=fcgi_serve_test&do=edit",
            &[
                ("sectok", &sectok),
                ("id", "fcgi_serve_test"),
                ("rev", "0"),
                ("date", ""),
                ("prefix", &prefix),
                ("suffix", ""),
                ("changecheck", &changecheck),
                ("target", "section"),
                ("wikitext", text),
                ("summary", "fcgi serve test"),
                ("do[save]", "1"),
            ],
        )
        .await;
    assert_eq!(head.status, 302, "a saved edit redirects");
    let (head, html) = browser.get("/doku.php?id=fcgi_serve_test").await;
    assert_eq!(head.status, 200);
    assert!(
        html.contains("Served by <strong>fcgi serve</strong> through php-fpm."),
        "{html}"
    );
    assert!(data.join("pages/fcgi_serve_test.txt").is_file());
    let log = server.log();
    assert!(
        log.contains("\"POST /doku.php?id=fcgi_serve_test&do=edit HTTP/1.1\" 302"),
        "{log}"
    );
}
