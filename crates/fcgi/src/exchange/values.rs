//! FCGI_GET_VALUES, for both clients: the record that asks, and the answer
//! decoded from whatever the transport reads.

use fcgi_proto::decode::{Decoder, Event};
use fcgi_proto::encode::encode_get_values;

use super::trace::{trace_event, trace_sent_records};
use crate::error::Error;

/// The sans-IO half of FCGI_GET_VALUES: decodes the server's answer as it
/// arrives. Both transports feed it whatever they read.
pub(crate) struct ValuesAnswer {
    decoder: Decoder,
}

impl ValuesAnswer {
    /// Appends to `out` the FCGI_GET_VALUES record asking for `names`, and
    /// returns the answer to wait for.
    pub(crate) fn ask(names: &[&str], out: &mut Vec<u8>) -> ValuesAnswer {
        let start = out.len();
        encode_get_values(names.iter().copied(), out);
        trace_sent_records(&out[start..]);
        ValuesAnswer {
            decoder: Decoder::multiplexed(),
        }
    }

    /// Feeds bytes read from the connection, nothing when the server
    /// closed it (an error then); returns the pairs once the
    /// GET_VALUES_RESULT record is complete.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        address: &str,
    ) -> Result<Option<Vec<(String, String)>>, Error> {
        if input.is_empty() {
            return Err(Error::ConnectionClosed {
                address: address.to_string(),
                received: self.decoder.position(),
            });
        }
        while !input.is_empty() {
            let (used, event) = self
                .decoder
                .decode(input)
                .map_err(|e| Error::from_decode(address, e))?;
            if let Some(event) = &event {
                trace_event("recv", event);
            }
            input = &input[used..];
            match event {
                Some(Event::Values(pairs)) => {
                    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                    return Ok(Some(
                        pairs.into_iter().map(|(n, v)| (text(n), text(v))).collect(),
                    ));
                }
                Some(Event::UnknownType(t)) => {
                    return Err(Error::protocol(
                        address,
                        format!("server does not understand management record type {t}"),
                    ))
                }
                Some(_) => {
                    return Err(Error::protocol(
                        address,
                        "response record on a management request",
                    ))
                }
                None => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fcgi_proto::encode::encode_record;
    use fcgi_proto::nv::encode_pair;
    use fcgi_proto::record::RecordType;

    #[test]
    fn the_answer_arrives_in_pieces() {
        let mut out = Vec::new();
        let mut answer = ValuesAnswer::ask(&["FCGI_MPXS_CONNS"], &mut out);
        assert_eq!(out[1], RecordType::GetValues as u8);
        let mut pairs = Vec::new();
        encode_pair(b"FCGI_MPXS_CONNS", b"0", &mut pairs);
        let mut reply = Vec::new();
        encode_record(RecordType::GetValuesResult, 0, &pairs, &mut reply);
        let (first, rest) = reply.split_at(5);
        assert_eq!(answer.feed(first, "unix:/x.sock").unwrap(), None);
        assert_eq!(
            answer.feed(rest, "unix:/x.sock").unwrap(),
            Some(vec![("FCGI_MPXS_CONNS".into(), "0".into())])
        );
    }

    #[test]
    fn a_close_before_the_answer_is_an_error() {
        let mut answer = ValuesAnswer::ask(&["FCGI_MPXS_CONNS"], &mut Vec::new());
        assert_eq!(answer.feed(&[1, 10], "unix:/x.sock").unwrap(), None);
        assert!(matches!(
            answer.feed(&[], "unix:/x.sock"),
            Err(Error::ConnectionClosed { received: 2, .. })
        ));
    }
}
