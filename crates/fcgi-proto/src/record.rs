//! Record framing: the 8-byte header, record types, roles, flags and statuses
//! of FastCGI 1.0.

/// The only protocol version there is (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;
/// Length of a record header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest content a record can carry (the u16 content length).
pub const MAX_CONTENT_LEN: usize = 65535;
/// Largest content + padding php-fpm accepts in one record: it resets the
/// connection above this, so the encoder keeps content + padding within it.
pub const MAX_RECORD_BODY_LEN: usize = 65535;
/// Stream chunk size used for STDIN and DATA: the largest multiple of 8 that
/// fits in one record, so stream records never need padding.
pub const STREAM_CHUNK_LEN: usize = 65528;
/// Request id reserved for management records (GET_VALUES and friends).
pub const MANAGEMENT_REQUEST_ID: u16 = 0;
/// BEGIN_REQUEST flag: keep the connection open after this request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// Management variable: the maximum number of concurrent connections.
pub const MAX_CONNS: &str = "FCGI_MAX_CONNS";
/// Management variable: the maximum number of concurrent requests.
pub const MAX_REQS: &str = "FCGI_MAX_REQS";
/// Management variable: "1" when the server multiplexes connections.
pub const MPXS_CONNS: &str = "FCGI_MPXS_CONNS";

/// The record types of FastCGI 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1): starts a request.
    BeginRequest = 1,
    /// `FCGI_ABORT_REQUEST` (2): asks the application to abort a request.
    AbortRequest = 2,
    /// `FCGI_END_REQUEST` (3): the application's last word on a request.
    EndRequest = 3,
    /// `FCGI_PARAMS` (4): the name-value environment stream.
    Params = 4,
    /// `FCGI_STDIN` (5): the request body stream.
    Stdin = 5,
    /// `FCGI_STDOUT` (6): the response stream.
    Stdout = 6,
    /// `FCGI_STDERR` (7): the error stream.
    Stderr = 7,
    /// `FCGI_DATA` (8): the Filter role's file data stream.
    Data = 8,
    /// `FCGI_GET_VALUES` (9): management query.
    GetValues = 9,
    /// `FCGI_GET_VALUES_RESULT` (10): management answer.
    GetValuesResult = 10,
    /// `FCGI_UNKNOWN_TYPE` (11): the peer did not understand a management record.
    UnknownType = 11,
}

impl RecordType {
    /// The record type for a wire value, or `None` for a value FastCGI 1.0
    /// does not define.
    pub fn from_u8(value: u8) -> Option<RecordType> {
        use RecordType::*;
        Some(match value {
            1 => BeginRequest,
            2 => AbortRequest,
            3 => EndRequest,
            4 => Params,
            5 => Stdin,
            6 => Stdout,
            7 => Stderr,
            8 => Data,
            9 => GetValues,
            10 => GetValuesResult,
            11 => UnknownType,
            _ => return None,
        })
    }

    /// The specification's name, e.g. `FCGI_STDOUT`.
    pub fn name(self) -> &'static str {
        use RecordType::*;
        match self {
            BeginRequest => "FCGI_BEGIN_REQUEST",
            AbortRequest => "FCGI_ABORT_REQUEST",
            EndRequest => "FCGI_END_REQUEST",
            Params => "FCGI_PARAMS",
            Stdin => "FCGI_STDIN",
            Stdout => "FCGI_STDOUT",
            Stderr => "FCGI_STDERR",
            Data => "FCGI_DATA",
            GetValues => "FCGI_GET_VALUES",
            GetValuesResult => "FCGI_GET_VALUES_RESULT",
            UnknownType => "FCGI_UNKNOWN_TYPE",
        }
    }
}

/// A human-readable name for any record type byte, defined or not.
pub fn type_name(value: u8) -> String {
    match RecordType::from_u8(value) {
        Some(t) => t.name().to_string(),
        None => format!("unknown record type {value}"),
    }
}

/// The role a request asks the application to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): the ordinary CGI role.
    #[default]
    Responder,
    /// `FCGI_AUTHORIZER` (2): decide whether a request is allowed.
    Authorizer,
    /// `FCGI_FILTER` (3): process a file sent on the DATA stream.
    Filter,
}

impl Role {
    /// The wire value of the role.
    pub fn to_u16(self) -> u16 {
        match self {
            Role::Responder => 1,
            Role::Authorizer => 2,
            Role::Filter => 3,
        }
    }

    /// The role for a wire value, if defined.
    pub fn from_u16(value: u16) -> Option<Role> {
        match value {
            1 => Some(Role::Responder),
            2 => Some(Role::Authorizer),
            3 => Some(Role::Filter),
            _ => None,
        }
    }
}

/// The protocol status of an END_REQUEST record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): normal end.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): the application does not multiplex.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): the application is out of resources.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): the application does not know the role.
    UnknownRole,
    /// A value the specification does not define.
    Other(u8),
}

impl ProtocolStatus {
    /// The status for a wire value.
    pub fn from_u8(value: u8) -> ProtocolStatus {
        match value {
            0 => ProtocolStatus::RequestComplete,
            1 => ProtocolStatus::CantMpxConn,
            2 => ProtocolStatus::Overloaded,
            3 => ProtocolStatus::UnknownRole,
            other => ProtocolStatus::Other(other),
        }
    }

    /// The wire value of the status.
    pub fn to_u8(self) -> u8 {
        match self {
            ProtocolStatus::RequestComplete => 0,
            ProtocolStatus::CantMpxConn => 1,
            ProtocolStatus::Overloaded => 2,
            ProtocolStatus::UnknownRole => 3,
            ProtocolStatus::Other(v) => v,
        }
    }

    /// True for `FCGI_REQUEST_COMPLETE`.
    pub fn is_complete(self) -> bool {
        self == ProtocolStatus::RequestComplete
    }

    /// The specification's name, e.g. `FCGI_OVERLOADED`.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolStatus::RequestComplete => "FCGI_REQUEST_COMPLETE",
            ProtocolStatus::CantMpxConn => "FCGI_CANT_MPX_CONN",
            ProtocolStatus::Overloaded => "FCGI_OVERLOADED",
            ProtocolStatus::UnknownRole => "FCGI_UNKNOWN_ROLE",
            ProtocolStatus::Other(_) => "undefined protocol status",
        }
    }
}

impl std::fmt::Display for ProtocolStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.to_u8())
    }
}

/// A record header as it is on the wire.
///
/// ```
/// use fcgi_proto::record::{Header, RecordType};
/// let header = Header::new(RecordType::Stdout, 1, 5, 3);
/// let bytes = header.to_bytes();
/// assert_eq!(bytes, [1, 6, 0, 1, 0, 5, 3, 0]);
/// assert_eq!(Header::parse(&bytes), header);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Protocol version; 1 for every valid record.
    pub version: u8,
    /// Record type byte (see [`RecordType`]), kept raw so that undefined
    /// values can be reported.
    pub record_type: u8,
    /// Request id; 0 for management records.
    pub request_id: u16,
    /// Number of content bytes that follow the header.
    pub content_length: u16,
    /// Number of padding bytes after the content.
    pub padding_length: u8,
}

impl Header {
    /// A version 1 header.
    pub fn new(
        record_type: RecordType,
        request_id: u16,
        content_length: u16,
        padding_length: u8,
    ) -> Header {
        Header {
            version: VERSION_1,
            record_type: record_type as u8,
            request_id,
            content_length,
            padding_length,
        }
    }

    /// Reads a header from its 8 wire bytes. Every byte pattern is a header;
    /// validating version and type is the decoder's job.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: bytes[0],
            record_type: bytes[1],
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
        }
    }

    /// The 8 wire bytes of the header (the reserved byte is 0).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [
            self.version,
            self.record_type,
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_length,
            0,
        ]
    }

    /// Content plus padding: the bytes that follow this header.
    pub fn body_len(&self) -> usize {
        self.content_length as usize + self.padding_length as usize
    }
}
