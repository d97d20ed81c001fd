//! The blocking client every one-request command uses, configured from
//! the shared options, and the management values `fcgi values` and
//! `fcgi doctor` ask for.

use fcgi::{Client, Config};

use crate::shared::failure::Failure;
use crate::shared::options::ConnArgs;
use crate::shared::target::{resolve, Target};
use crate::shared::verbose;

/// The names `fcgi values` (and `fcgi doctor`) ask for with
/// FCGI_GET_VALUES.
pub const VALUE_NAMES: [&str; 3] = [
    fcgi::fcgi_proto::record::MAX_CONNS,
    fcgi::fcgi_proto::record::MAX_REQS,
    fcgi::fcgi_proto::record::MPXS_CONNS,
];

/// The server at `address` (discovered when `None`) and a client for it
/// with the time limits of `conn`: how the commands that read one server
/// start.
pub fn connect(address: Option<&str>, conn: &ConnArgs) -> Result<(Target, Client), Failure> {
    let target = resolve(address)?;
    let client = client(&target, conn, None)?;
    Ok((target, client))
}

/// The client for `target` with the time limits of `conn`.
pub fn client(target: &Target, conn: &ConnArgs, max_head: Option<u64>) -> Result<Client, Failure> {
    if conn.verbose {
        verbose::info(&format!("address {} ({})", target.address, target.how));
    }
    let mut config = Config::default()
        .connect_timeout(conn.connect_timeout)
        .deadline(conn.timeout)
        .idle_timeout(conn.timeout);
    if let Some(max) = max_head {
        config = config.max_head_bytes(usize::try_from(max).unwrap_or(usize::MAX));
    }
    Ok(Client::with_config(target.address.clone(), config)?)
}
