//! Request ids: which one a request gets, on a connection that carries one
//! request at a time and on a multiplexed one.

/// The request id used on connections that carry one request at a time.
pub(crate) const SINGLE_REQUEST_ID: u16 = 1;

/// The id for the next request on a kept connection after `id`'s: ids go
/// round (1 to 65535, then 1 again), so that a record a misbehaving server
/// sends late for an earlier request is not taken for the next one's.
pub(crate) fn following_request_id(id: u16) -> u16 {
    id.checked_add(1).unwrap_or(SINGLE_REQUEST_ID)
}

/// The first id from `from` on (going round as [`following_request_id`]
/// does, 0 read as 1) that is not `in_use`. The caller keeps fewer than
/// 65535 ids in use, so one is always free.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))] // the async client's
pub(crate) fn first_free_request_id(from: u16, in_use: impl Fn(u16) -> bool) -> u16 {
    let mut id = from.max(SINGLE_REQUEST_ID);
    while in_use(id) {
        id = following_request_id(id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_go_round_and_skip_zero() {
        assert_eq!(following_request_id(SINGLE_REQUEST_ID), 2);
        assert_eq!(following_request_id(41), 42);
        assert_eq!(following_request_id(u16::MAX), SINGLE_REQUEST_ID);
    }

    #[test]
    fn a_free_id_skips_those_in_use_and_goes_round() {
        assert_eq!(first_free_request_id(0, |_| false), 1);
        assert_eq!(first_free_request_id(5, |id| id == 5 || id == 6), 7);
        assert_eq!(
            first_free_request_id(u16::MAX - 1, |id| id >= u16::MAX - 1),
            1
        );
    }
}
