//! [`Slot`]: one upstream as the builder was given it, an address (one
//! [`Upstream`] with its pool) or a host name (the upstreams of its
//! addresses, resolved again from time to time).

use std::sync::Arc;

use super::pool::Upstream;
use super::resolve::Named;
use crate::error::Error;

/// One upstream as given: an address, or a host name standing for the
/// upstreams of its addresses.
#[derive(Debug)]
pub(super) enum Slot {
    Fixed(Arc<Upstream>),
    Named(Arc<Named>),
}

impl Slot {
    /// The upstreams it stands for now (a name is resolved on first use).
    pub(super) async fn upstreams(&self) -> Result<Vec<Arc<Upstream>>, Error> {
        match self {
            Slot::Fixed(upstream) => Ok(vec![Arc::clone(upstream)]),
            Slot::Named(named) => named.upstreams().await,
        }
    }
}
