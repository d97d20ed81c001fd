//! The Authorizer and Filter roles of FastCGI.
//!
//! - **Authorizer**: the application decides whether a request may proceed. A
//!   200 answer grants it, and its `Variable-NAME: value` headers are variables
//!   to pass on to the next request (as `NAME`); any other status denies it,
//!   and the server's response is returned as it is.
//! - **Filter**: the application receives a file on the DATA stream, after
//!   STDIN, with `FCGI_DATA_LAST_MOD` and `FCGI_DATA_LENGTH` describing it, and
//!   answers with the filtered result.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::blocking::Client;
use crate::error::Error;
use crate::request::{Body, Params, Request, Role};
use crate::response::Response;

/// Prefix of the response headers that carry an authorizer's variables.
pub const VARIABLE_HEADER_PREFIX: &str = "Variable-";

/// The outcome of an Authorizer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Status 200: the request may proceed.
    Granted {
        /// `Variable-NAME` headers as (NAME, value), in order.
        variables: Vec<(String, Vec<u8>)>,
        /// The whole response.
        response: Response,
    },
    /// Any other status: the server's response, to return to the client.
    Denied(Response),
}

impl Authorization {
    /// Interprets an Authorizer's response.
    pub fn from_response(response: Response) -> Authorization {
        if response.status != 200 {
            return Authorization::Denied(response);
        }
        let variables = response
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let prefix = name.get(..VARIABLE_HEADER_PREFIX.len())?;
                let rest = &name[VARIABLE_HEADER_PREFIX.len()..];
                (prefix.eq_ignore_ascii_case(VARIABLE_HEADER_PREFIX) && !rest.is_empty())
                    .then(|| (rest.to_string(), value.to_vec()))
            })
            .collect();
        Authorization::Granted {
            variables,
            response,
        }
    }

    /// True when granted.
    pub fn is_granted(&self) -> bool {
        matches!(self, Authorization::Granted { .. })
    }

    /// Sets the granted variables on the parameters of the next request.
    pub fn apply_to(&self, params: &mut Params) {
        if let Authorization::Granted { variables, .. } = self {
            for (name, value) in variables {
                params.set(name, value);
            }
        }
    }
}

impl Request {
    /// Makes this an Authorizer request: the role is set and the body is
    /// dropped (an authorizer receives none), as is CONTENT_LENGTH.
    pub fn into_authorizer(self) -> Request {
        self.role(Role::Authorizer)
            .body(Body::Empty)
            .without_param("CONTENT_LENGTH")
    }

    /// Makes this a Filter request for `data`, `len` bytes long and last
    /// modified at `modified`: sets the role, the DATA stream,
    /// `FCGI_DATA_LENGTH` and `FCGI_DATA_LAST_MOD` (seconds since 1970).
    pub fn into_filter(self, data: impl Into<Body>, len: u64, modified: SystemTime) -> Request {
        let last_mod = modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.role(Role::Filter)
            .data(data)
            .param("FCGI_DATA_LENGTH", len.to_string())
            .param("FCGI_DATA_LAST_MOD", last_mod.to_string())
    }

    /// Makes this a Filter request for the file at `path`, streamed from disk.
    pub fn into_filter_file(self, path: impl AsRef<Path>) -> io::Result<Request> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        Ok(self.into_filter(
            Body::from_reader(file, Some(meta.len())),
            meta.len(),
            modified,
        ))
    }
}

impl Client {
    /// Sends `request` in the Authorizer role and interprets the answer.
    ///
    /// ```no_run
    /// use fcgi::{Client, Params, Request};
    /// let client = Client::new("127.0.0.1:9000")?;
    /// let outcome = client.authorize(Request::get("/srv/auth.php").param("REMOTE_USER", "ann"))?;
    /// let mut next = Params::new();
    /// outcome.apply_to(&mut next); // Variable-* headers become params
    /// # Ok::<(), fcgi::Error>(())
    /// ```
    pub fn authorize(&self, request: Request) -> Result<Authorization, Error> {
        Ok(Authorization::from_response(
            self.execute(request.into_authorizer())?,
        ))
    }
}

#[cfg(feature = "tokio")]
impl crate::nonblocking::Client {
    /// Sends `request` in the Authorizer role and interprets the answer, as
    /// the blocking client's [`Client::authorize`] does.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), fcgi::Error> {
    /// use fcgi::{AsyncClient, Params, Request};
    /// let client = AsyncClient::new("127.0.0.1:9000")?;
    /// let outcome = client
    ///     .authorize(Request::get("/srv/auth.php").param("REMOTE_USER", "ann"))
    ///     .await?;
    /// let mut next = Params::new();
    /// outcome.apply_to(&mut next); // Variable-* headers become params
    /// # Ok(()) }
    /// ```
    pub async fn authorize(&self, request: Request) -> Result<Authorization, Error> {
        Ok(Authorization::from_response(
            self.execute(request.into_authorizer()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Headers;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        let mut h = Headers::new();
        for (n, v) in headers {
            h.append(*n, v.as_bytes());
        }
        Response {
            status,
            reason: String::new(),
            headers: h,
            body: Vec::new(),
            stderr: Vec::new(),
            stderr_dropped: 0,
            app_status: 0,
        }
    }

    #[test]
    fn status_200_grants_with_variable_headers() {
        let outcome = Authorization::from_response(response(
            200,
            &[
                ("Variable-USER_ID", "42"),
                ("variable-ROLE", "admin"),
                ("X-Other", "1"),
                ("Variable-", "x"),
            ],
        ));
        let Authorization::Granted { variables, .. } = &outcome else {
            panic!("denied")
        };
        assert_eq!(
            variables,
            &[
                ("USER_ID".to_string(), b"42".to_vec()),
                ("ROLE".to_string(), b"admin".to_vec())
            ]
        );
        let mut params = Params::new();
        outcome.apply_to(&mut params);
        assert_eq!(params.get("USER_ID"), Some(&b"42"[..]));
    }

    #[test]
    fn any_other_status_denies_with_the_response() {
        let outcome = Authorization::from_response(response(403, &[("Variable-X", "1")]));
        assert!(matches!(outcome, Authorization::Denied(r) if r.status == 403));
    }

    #[test]
    fn filter_request_carries_data_length_and_last_modified() {
        let when = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let request = Request::get("/f.php").into_filter("file body", 9, when);
        assert_eq!(request.get_role(), Role::Filter);
        assert_eq!(request.params().get("FCGI_DATA_LENGTH"), Some(&b"9"[..]));
        assert_eq!(
            request.params().get("FCGI_DATA_LAST_MOD"),
            Some(&b"1700000000"[..])
        );
    }

    #[test]
    fn authorizer_request_has_no_body() {
        let request = Request::post("/a.php", "text/plain", "secret").into_authorizer();
        assert_eq!(request.get_role(), Role::Authorizer);
        assert!(request.get_body().is_empty());
        assert_eq!(request.params().get("CONTENT_LENGTH"), None);
    }
}
