//! The response half of one exchange, for both clients: [`ResponseMachine`]
//! turns decoder events into the head, body ranges and kept STDERR, applies
//! the head and STDERR limits, checks END_REQUEST's protocol status, and
//! decides with [`reusable_after_end`] whether the connection may carry
//! another request. Each call says what happened as a [`Step`].

use std::ops::Range;
use std::sync::Arc;

use fcgi_proto::decode::{Decoder, EndRequest, Event};
use fcgi_proto::head::{Head, HeadParser};

use super::reuse::reusable_after_end;
use super::trace::trace_event;
use crate::config::Limits;
use crate::error::Error;

/// What one call to [`ResponseMachine::feed`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The input was used up without a visible result.
    Nothing,
    /// The head is complete ([`ResponseMachine::take_head`]); the range of the
    /// input that follows it in the same record is body (maybe empty).
    Head(Range<usize>),
    /// Body bytes at this range of the input.
    Body(Range<usize>),
    /// STDERR bytes at this range of the input (already kept, up to the limit).
    Stderr(Range<usize>),
    /// END_REQUEST with FCGI_REQUEST_COMPLETE arrived.
    End(EndRequest),
}

/// Response state of one exchange: decoder, head parser, kept STDERR.
pub(crate) struct ResponseMachine {
    decoder: Decoder,
    head_parser: Option<HeadParser>,
    head: Option<Head>,
    limits: Limits,
    pub(crate) stderr: Vec<u8>,
    pub(crate) stderr_dropped: u64,
    end: Option<EndRequest>,
    address: Arc<str>,
    /// Input the last [`ResponseMachine::feed`] consumed when it returned
    /// [`Error::Rejected`]: the refused END_REQUEST, and what came before it
    /// in that input (set only then: nothing on the way of a response).
    used_before_refusal: usize,
}

impl ResponseMachine {
    /// The machine for one response. The address (for error messages) is
    /// shared: a transport that keeps it as an `Arc<str>` pays no copy.
    pub(crate) fn new(
        request_id: u16,
        limits: Limits,
        address: impl Into<Arc<str>>,
    ) -> ResponseMachine {
        ResponseMachine {
            decoder: Decoder::for_request(request_id),
            head_parser: Some(HeadParser::new(limits.max_head_bytes)),
            head: None,
            limits,
            stderr: Vec::new(),
            stderr_dropped: 0,
            end: None,
            address: address.into(),
            used_before_refusal: 0,
        }
    }

    /// Makes the machine ready for the response to request `request_id` on
    /// the same connection, keeping its address and limits. Records still
    /// coming for the request before (strays after its END_REQUEST) are
    /// skipped, and keep the connection from another reuse.
    pub(crate) fn restart(&mut self, request_id: u16) {
        self.decoder = self.decoder.for_next_request(request_id);
        self.head_parser = Some(HeadParser::new(self.limits.max_head_bytes));
        self.head = None;
        self.stderr.clear();
        self.stderr_dropped = 0;
        self.end = None;
    }

    /// Response bytes (records included) consumed so far.
    pub(crate) fn received(&self) -> u64 {
        self.decoder.position()
    }

    /// Whether the connection may carry another request now that the
    /// response has ended, `rest` having been read after END_REQUEST (see
    /// [`reusable_after_end`]).
    pub(crate) fn reusable(&mut self, rest: &[u8], request_sent: bool, keep_alive: bool) -> bool {
        reusable_after_end(&mut self.decoder, rest, request_sent, keep_alive)
    }

    /// Input consumed by the [`ResponseMachine::feed`] that returned
    /// [`Error::Rejected`], END_REQUEST included: what follows it is the
    /// rest for [`ResponseMachine::reusable`].
    pub(crate) fn used_before_refusal(&self) -> usize {
        self.used_before_refusal
    }

    /// The head, once, after [`Step::Head`].
    pub(crate) fn take_head(&mut self) -> Option<Head> {
        self.head.take()
    }

    /// Consumes input until something happens; returns bytes used and what.
    #[inline(always)]
    pub(crate) fn feed(&mut self, input: &[u8]) -> Result<(usize, Step), Error> {
        let (used, event) = self
            .decoder
            .decode(input)
            .map_err(|e| Error::from_decode(&self.address, e))?;
        if let Some(event) = &event {
            trace_event("recv", event);
        }
        let Some(event) = event else {
            return Ok((used, Step::Nothing));
        };
        // Stream content always ends exactly where the decoder stopped, so
        // ranges within the event's content shift by `used - len`.
        let shift = match &event {
            Event::Stdout(_, bytes) | Event::Stderr(_, bytes) => used - bytes.len(),
            _ => 0,
        };
        let moved = |r: Range<usize>| r.start + shift..r.end + shift;
        let step = match self.on_event(event) {
            Ok(step) => step,
            Err(error) => {
                if matches!(error, Error::Rejected { .. }) {
                    self.used_before_refusal = used;
                }
                return Err(error);
            }
        };
        let step = match step {
            Step::Head(r) => Step::Head(moved(r)),
            Step::Body(r) => Step::Body(moved(r)),
            Step::Stderr(r) => Step::Stderr(moved(r)),
            other => other,
        };
        Ok((used, step))
    }

    /// Handles one event already decoded elsewhere (the async client decodes
    /// a whole multiplexed connection and routes events by request id).
    /// Ranges in the returned step index the event's own content bytes.
    #[inline(always)]
    pub(crate) fn on_event(&mut self, event: Event<'_>) -> Result<Step, Error> {
        let range_of = |len: usize| 0..len;
        let step = match event {
            Event::Values(_) | Event::UnknownType(_) => Step::Nothing,
            Event::Stderr(_, bytes) => {
                let room = self
                    .limits
                    .max_stderr_bytes
                    .saturating_sub(self.stderr.len());
                let keep = room.min(bytes.len());
                self.stderr.extend_from_slice(&bytes[..keep]);
                self.stderr_dropped += (bytes.len() - keep) as u64;
                Step::Stderr(range_of(bytes.len()))
            }
            Event::Stdout(_, bytes) => match self.head_parser.as_mut() {
                None => Step::Body(range_of(bytes.len())),
                Some(parser) => match parser.push(bytes) {
                    Ok(None) => Step::Nothing,
                    Ok(Some((head, head_len))) => {
                        self.head = Some(head);
                        self.head_parser = None;
                        let body = range_of(bytes.len());
                        Step::Head(body.start + head_len..body.end)
                    }
                    Err(e) => {
                        return Err(Error::from_head(
                            &self.address,
                            e,
                            self.limits.max_head_bytes,
                        ))
                    }
                },
            },
            Event::End(_, end) => {
                if !end.protocol_status.is_complete() {
                    return Err(Error::Rejected {
                        address: self.address.to_string(),
                        status: end.protocol_status,
                    });
                }
                if let Some(parser) = &self.head_parser {
                    return Err(Error::protocol(&self.address, parser.finish()));
                }
                self.end = Some(end);
                Step::End(end)
            }
        };
        Ok(step)
    }
}
