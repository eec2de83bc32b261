//! FastCGI 1.0 record layer: the 8-byte header, record types, roles,
//! protocol statuses, flags and padding rules (FastCGI spec §3.3, §8).

use thiserror::Error;

/// The only protocol version defined (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;
/// Size of a record header on the wire.
pub const HEADER_LEN: usize = 8;
/// Largest content a single record can carry (16-bit length field).
pub const MAX_CONTENT_LEN: usize = u16::MAX as usize;
/// Request id reserved for management records.
pub const NULL_REQUEST_ID: u16 = 0;
/// `flags` bit in BEGIN_REQUEST: keep the connection open after the request.
pub const KEEP_CONN: u8 = 1;

/// Errors of the record layer (encoding side only: decoding a header
/// cannot fail, validation is the codec's job).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// A single record cannot carry more than 65535 content bytes.
    #[error("record content of {0} bytes exceeds the 65535-byte limit")]
    ContentTooLong(usize),
}

/// FastCGI record types (`FCGI_BEGIN_REQUEST` .. `FCGI_UNKNOWN_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    BeginRequest = 1,
    AbortRequest = 2,
    EndRequest = 3,
    Params = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Data = 8,
    GetValues = 9,
    GetValuesResult = 10,
    UnknownType = 11,
}

impl RecordType {
    /// Maps a wire value to a known type; `None` for types this codec does
    /// not know (the header keeps the raw byte so they can be reported).
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::BeginRequest,
            2 => Self::AbortRequest,
            3 => Self::EndRequest,
            4 => Self::Params,
            5 => Self::Stdin,
            6 => Self::Stdout,
            7 => Self::Stderr,
            8 => Self::Data,
            9 => Self::GetValues,
            10 => Self::GetValuesResult,
            11 => Self::UnknownType,
            _ => return None,
        })
    }

    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Roles requested in BEGIN_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Role {
    Responder = 1,
    Authorizer = 2,
    Filter = 3,
}

impl Role {
    #[must_use]
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Responder),
            2 => Some(Self::Authorizer),
            3 => Some(Self::Filter),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// `protocolStatus` values of END_REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolStatus {
    RequestComplete = 0,
    CantMpxConn = 1,
    Overloaded = 2,
    UnknownRole = 3,
}

impl ProtocolStatus {
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::RequestComplete),
            1 => Some(Self::CantMpxConn),
            2 => Some(Self::Overloaded),
            3 => Some(Self::UnknownRole),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Padding needed to bring `content_len` up to a multiple of 8, as the
/// spec recommends for aligned processing on the receiving side.
#[must_use]
pub fn padding_for(content_len: usize) -> u8 {
    match content_len % 8 {
        0 => 0,
        // r is in 1..8, so 8 - r is in 1..8 and fits in u8.
        r => u8::try_from(8usize.saturating_sub(r)).unwrap_or(0),
    }
}

/// A decoded record header. `record_type` stays a raw byte so unknown
/// types survive decoding and can be answered with UNKNOWN_TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub record_type: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    /// A version-1 header with padding chosen for 8-byte alignment.
    #[must_use]
    pub fn new(record_type: u8, request_id: u16, content_length: u16) -> Self {
        Self { version: VERSION_1, record_type, request_id, content_length, padding_length: padding_for(usize::from(content_length)) }
    }

    /// Decodes the fixed layout; the reserved byte is ignored.
    #[must_use]
    pub fn from_bytes(b: [u8; HEADER_LEN]) -> Self {
        let [version, record_type, id1, id0, len1, len0, padding_length, _reserved] = b;
        Self { version, record_type, request_id: u16::from_be_bytes([id1, id0]), content_length: u16::from_be_bytes([len1, len0]), padding_length }
    }

    #[must_use]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [id1, id0] = self.request_id.to_be_bytes();
        let [len1, len0] = self.content_length.to_be_bytes();
        [self.version, self.record_type, id1, id0, len1, len0, self.padding_length, 0]
    }

    /// Content plus padding: the bytes that follow this header.
    #[must_use]
    pub fn body_len(&self) -> usize {
        usize::from(self.content_length).saturating_add(usize::from(self.padding_length))
    }
}

/// Appends exactly one record (header, content, zero padding).
pub fn write_record(out: &mut Vec<u8>, record_type: u8, request_id: u16, content: &[u8]) -> Result<(), RecordError> {
    let len = u16::try_from(content.len()).map_err(|_| RecordError::ContentTooLong(content.len()))?;
    push_record(out, record_type, request_id, content, len);
    Ok(())
}

/// Appends one record whose content length `len` is already known to fit.
fn push_record(out: &mut Vec<u8>, record_type: u8, request_id: u16, content: &[u8], len: u16) {
    let header = Header::new(record_type, request_id, len);
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, usize::from(header.padding_length)));
}

/// Appends a record with a fixed 8-byte body (BEGIN_REQUEST, END_REQUEST, UNKNOWN_TYPE):
/// it always fits, so this cannot fail.
pub fn write_body8(out: &mut Vec<u8>, record_type: u8, request_id: u16, body: &[u8; 8]) {
    push_record(out, record_type, request_id, body, 8);
}

/// Appends stream data as records of at most 65535 content bytes.
/// Empty `data` writes nothing: an empty stream record means
/// end-of-stream and must only be sent deliberately (see [`write_stream_end`]).
pub fn write_stream(out: &mut Vec<u8>, record_type: u8, request_id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        // chunks() never yields more than MAX_CONTENT_LEN (u16::MAX) bytes.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        push_record(out, record_type, request_id, chunk, len);
    }
}

/// Appends the empty record that closes a stream.
pub fn write_stream_end(out: &mut Vec<u8>, record_type: u8, request_id: u16) {
    push_record(out, record_type, request_id, &[], 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_from_literal_bytes() {
        // version 1, PARAMS, id 0x0102, len 0x0304, padding 4, reserved 0xff
        let h = Header::from_bytes([1, 4, 0x01, 0x02, 0x03, 0x04, 4, 0xff]);
        assert_eq!(h, Header { version: 1, record_type: 4, request_id: 0x0102, content_length: 0x0304, padding_length: 4 });
        // reserved byte is written as zero
        assert_eq!(h.to_bytes(), [1, 4, 0x01, 0x02, 0x03, 0x04, 4, 0]);
        assert_eq!(h.body_len(), 0x0304 + 4);
    }

    #[test]
    fn header_round_trip() {
        for (t, id, len) in [(1u8, 1u16, 8u16), (11, 0, 0), (6, 65535, 65535), (200, 7, 3)] {
            let h = Header::new(t, id, len);
            assert_eq!(Header::from_bytes(h.to_bytes()), h);
        }
    }

    #[test]
    fn padding_values() {
        assert_eq!(padding_for(0), 0);
        assert_eq!(padding_for(1), 7);
        assert_eq!(padding_for(7), 1);
        assert_eq!(padding_for(8), 0);
        assert_eq!(padding_for(65535), 1);
        assert_eq!(padding_for(465), 7);
    }

    #[test]
    fn constants_match_spec() {
        assert_eq!(RecordType::BeginRequest.as_u8(), 1);
        assert_eq!(RecordType::UnknownType.as_u8(), 11);
        for v in 1..=11 {
            assert_eq!(RecordType::from_u8(v).map(RecordType::as_u8), Some(v));
        }
        assert_eq!(RecordType::from_u8(0), None);
        assert_eq!(RecordType::from_u8(12), None);
        assert_eq!(Role::from_u16(3), Some(Role::Filter));
        assert_eq!(Role::from_u16(4), None);
        assert_eq!(Role::Authorizer.as_u16(), 2);
        assert_eq!(ProtocolStatus::from_u8(3), Some(ProtocolStatus::UnknownRole));
        assert_eq!(ProtocolStatus::CantMpxConn.as_u8(), 1);
        assert_eq!(ProtocolStatus::from_u8(4), None);
    }

    #[test]
    fn write_record_pads_and_rejects_oversize() {
        let mut out = Vec::new();
        write_record(&mut out, 6, 1, b"abc").unwrap();
        assert_eq!(out, [1, 6, 0, 1, 0, 3, 5, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        let big = vec![0u8; MAX_CONTENT_LEN + 1];
        assert_eq!(write_record(&mut out, 6, 1, &big), Err(RecordError::ContentTooLong(MAX_CONTENT_LEN + 1)));
    }

    #[test]
    fn stream_helpers() {
        let mut out = Vec::new();
        write_stream(&mut out, 6, 1, b"");
        assert!(out.is_empty());
        write_stream_end(&mut out, 7, 2);
        assert_eq!(out, [1, 7, 0, 2, 0, 0, 0, 0]);
    }
}
