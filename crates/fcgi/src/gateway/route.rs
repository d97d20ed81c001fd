//! Where a request path leads: a script (with PATH_INFO), a static file, a
//! directory that needs its trailing slash, or nothing.
//!
//! The path is percent-decoded once, then checked and normalized lexically
//! before the file system is asked anything: NUL bytes, backslashes, invalid
//! UTF-8 and malformed escapes are refused, `.` segments and empty segments
//! vanish, and `..` removes the segment before it; a `..` that would climb
//! above the document root is refused. So no request path can name a file
//! outside the root (symbolic links inside the root are followed, as nginx
//! does by default).
//!
//! A script is found like nginx's `fastcgi_split_path_info ^(.+?\.php)(/.*)$`
//! followed by `try_files $fastcgi_script_name =404`: the first segment that
//! ends with a script extension **and** names an existing regular file is the
//! script, the rest is PATH_INFO. A prefix that does not exist never becomes
//! the script, so `/uploads/evil.jpg/x.php` cannot run `evil.jpg` (the
//! classic `cgi.fix_pathinfo` hole): it is a 404.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Settings;

/// Why a request path was refused (answered with 400 Bad Request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// The decoded path contains a NUL byte.
    Nul,
    /// The decoded path contains a backslash.
    Backslash,
    /// A `..` segment would climb above the document root.
    OutsideRoot,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::BadEscape => "malformed percent escape in the path",
            PathError::NotUtf8 => "the decoded path is not UTF-8",
            PathError::Nul => "NUL byte in the path",
            PathError::Backslash => "backslash in the path",
            PathError::OutsideRoot => "the path climbs above the document root",
            PathError::NotAbsolute => "the path does not start with /",
        })
    }
}

impl std::error::Error for PathError {}

/// A script to run, found under the document root: from
/// [`super::Gateway::resolve`], or made with [`Script::new`] to run a
/// script of the caller's choosing with [`super::Gateway::run`] (more
/// facts may come, so it is not built field by field).
///
/// ```
/// let script = fcgi::gateway::Script::new("/api.php", "/srv/www/api.php").path_info("/users/7");
/// assert_eq!(script.path_info, "/users/7");
/// assert!(!script.front_controller);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Script {
    /// The script's URI path (SCRIPT_NAME), e.g. `/blog/index.php`.
    pub script_name: String,
    /// The script's file (SCRIPT_FILENAME): the document root joined with
    /// [`Script::script_name`].
    pub filename: PathBuf,
    /// What followed the script in the path (PATH_INFO), empty or starting
    /// with `/`.
    pub path_info: String,
    /// True when the script is the front controller, reached because the
    /// path named nothing that exists.
    pub front_controller: bool,
}

impl Script {
    /// The script at URI path `script_name` (SCRIPT_NAME) and file
    /// `filename` (SCRIPT_FILENAME), with no PATH_INFO. The gateway does not
    /// check that the file is under the document root: it is the caller's
    /// choice.
    pub fn new(script_name: impl Into<String>, filename: impl Into<PathBuf>) -> Script {
        Script {
            script_name: script_name.into(),
            filename: filename.into(),
            path_info: String::new(),
            front_controller: false,
        }
    }

    /// Sets what follows the script in the path (PATH_INFO): empty, or
    /// starting with `/`.
    pub fn path_info(mut self, path_info: impl Into<String>) -> Script {
        self.path_info = path_info.into();
        self
    }
}

/// Where a request path leads, see [`super::Gateway::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Run this script.
    Script(Script),
    /// An existing regular file without a script extension: never sent to
    /// FastCGI.
    Static(PathBuf),
    /// A directory named without its trailing slash: redirect to the path
    /// with a `/` added (as nginx does).
    AddSlash,
    /// Nothing to serve (404).
    NotFound,
}

/// Decodes and normalizes a URI path into its segments (no empty, `.` or
/// `..` segment left) and whether it ended with `/`.
pub(crate) fn normalize(raw: &str) -> Result<(Vec<String>, bool), PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = percent_decode(raw.as_bytes())?;
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    if decoded.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    let text = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    let mut segments: Vec<String> = Vec::new();
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::OutsideRoot);
                }
            }
            other => segments.push(other.to_string()),
        }
    }
    let trailing = text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..");
    Ok((segments, trailing))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+` in a path).
pub(crate) fn percent_decode(input: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = input.get(i + 1).and_then(|b| hex(*b));
            let lo = input.get(i + 2).and_then(|b| hex(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

fn join(root: &Path, segments: &[String]) -> PathBuf {
    let mut path = root.to_path_buf();
    for s in segments {
        path.push(s);
    }
    path
}

fn uri_of(segments: &[String]) -> String {
    let mut uri = String::new();
    for s in segments {
        uri.push('/');
        uri.push_str(s);
    }
    uri
}

/// Resolves a URI path (still percent-encoded, without the query) against
/// the settings' document root.
pub(crate) fn resolve(settings: &Settings, raw_path: &str) -> Result<Route, PathError> {
    let (segments, trailing) = normalize(raw_path)?;
    if settings.deny_hidden
        && segments
            .iter()
            .any(|s| s.starts_with('.') && s != ".well-known")
    {
        return Ok(Route::NotFound);
    }
    let root = &settings.document_root;
    // 1. A script somewhere in the path; the rest is PATH_INFO.
    for (i, segment) in segments.iter().enumerate() {
        if !settings.is_script_name(segment) {
            continue;
        }
        let filename = join(root, &segments[..=i]);
        if is_file(&filename) {
            let mut path_info = uri_of(&segments[i + 1..]);
            if trailing && i + 1 < segments.len() {
                path_info.push('/');
            }
            return Ok(Route::Script(Script {
                script_name: uri_of(&segments[..=i]),
                filename,
                path_info,
                front_controller: false,
            }));
        }
    }
    // 2. The file itself, or a directory and its index.
    let full = join(root, &segments);
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_file() => return Ok(Route::Static(full)),
        Ok(meta) if meta.is_dir() => {
            if !trailing && !segments.is_empty() {
                return Ok(Route::AddSlash);
            }
            if let Some(index) = &settings.index {
                let filename = full.join(index);
                if settings.is_script_name(index) && is_file(&filename) {
                    let mut name_segments = segments.clone();
                    name_segments.push(index.clone());
                    return Ok(Route::Script(Script {
                        script_name: uri_of(&name_segments),
                        filename,
                        path_info: String::new(),
                        front_controller: false,
                    }));
                }
            }
        }
        _ => {
            // A missing script is a 404, not a front controller request
            // (nginx: `location ~ \.php$ { try_files $uri =404; }`).
            if segments.last().is_some_and(|s| settings.is_script_name(s)) {
                return Ok(Route::NotFound);
            }
        }
    }
    // 3. The front controller (`try_files $uri $uri/ /index.php?$query_string`).
    if settings.front_controller {
        if let Some(index) = &settings.index {
            let filename = root.join(index);
            if settings.is_script_name(index) && is_file(&filename) {
                return Ok(Route::Script(Script {
                    script_name: format!("/{index}"),
                    filename,
                    path_info: String::new(),
                    front_controller: true,
                }));
            }
        }
    }
    Ok(Route::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(raw: &str) -> Result<Vec<String>, PathError> {
        normalize(raw).map(|(s, _)| s)
    }

    #[test]
    fn dot_dot_that_stays_inside_is_resolved() {
        assert_eq!(segs("/a/../b.php").unwrap(), ["b.php"]);
        assert_eq!(segs("/a/./b//c").unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn dot_dot_above_the_root_is_refused_plain_or_encoded() {
        assert_eq!(segs("/../etc/passwd"), Err(PathError::OutsideRoot));
        assert_eq!(segs("/a/%2e%2e/%2E%2E/etc"), Err(PathError::OutsideRoot));
        assert_eq!(segs("/%2e%2e%2fetc"), Err(PathError::OutsideRoot));
    }

    #[test]
    fn nul_backslash_and_bad_escapes_are_refused() {
        assert_eq!(segs("/a.php%00.jpg"), Err(PathError::Nul));
        assert_eq!(segs("/..\\..\\x"), Err(PathError::Backslash));
        assert_eq!(segs("/a%5c..%5cb"), Err(PathError::Backslash));
        assert_eq!(segs("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(segs("/a%2"), Err(PathError::BadEscape));
        assert_eq!(segs("/a%ff"), Err(PathError::NotUtf8));
        assert_eq!(segs("a.php"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn trailing_slash_is_noticed() {
        assert!(normalize("/a/").unwrap().1);
        assert!(!normalize("/a").unwrap().1);
        assert_eq!(normalize("/").unwrap(), (vec![], true));
    }
}
