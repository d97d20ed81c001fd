//! What is left to write after one vectored write: the step both clients'
//! write-all loops share (the blocking body writer's `write_all_vectored`,
//! the async `write_parts`). The loops themselves stay two, one blocking
//! and one awaiting; they call this between writes.

use std::io::{self, IoSlice};

/// Drops the `n` bytes a vectored write took from the front of `rest`
/// (emptied slices included); a write that took nothing while bytes remain
/// is [`io::ErrorKind::WriteZero`]. A writer claiming more than it was
/// given is taken to have written all of it.
pub(crate) fn advance_written(rest: &mut &mut [IoSlice<'_>], n: usize) -> io::Result<()> {
    let left: usize = rest.iter().map(|slice| slice.len()).sum();
    if n == 0 && left > 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    IoSlice::advance_slices(rest, n.min(left));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_write_leaves_the_rest_of_each_slice() {
        let (header, body) = (*b"12345678", *b"body");
        let mut slices = [IoSlice::new(&header), IoSlice::new(&body)];
        let mut rest = &mut slices[..];
        advance_written(&mut rest, 3).unwrap();
        assert_eq!((rest.len(), &rest[0][..]), (2, &b"45678"[..]));
        advance_written(&mut rest, 6).unwrap();
        assert_eq!((rest.len(), &rest[0][..]), (1, &b"ody"[..]));
        advance_written(&mut rest, 99).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn writing_nothing_is_an_error_only_while_bytes_remain() {
        let body = *b"x";
        let mut slices = [IoSlice::new(&[]), IoSlice::new(&body)];
        let mut rest = &mut slices[..];
        let err = advance_written(&mut rest, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        let mut empty = [IoSlice::new(&[])];
        let mut rest = &mut empty[..];
        advance_written(&mut rest, 0).unwrap();
        assert!(rest.is_empty());
    }
}
