//! The web server's side of FastCGI, sans-IO: the request encoder and the response
//! decoder. Used by the CGI accelerator's relay, `cgi2wsgi bench` and the tests; the
//! responder itself never needs it.

use super::codec::{EncodeError, Framer, Limits, ProtocolError};
use super::nv::{self, NvError, Pair};
use super::record::{write_body8, write_record, write_stream, write_stream_end, Header, RecordType, Role, KEEP_CONN, MAX_CONTENT_LEN, NULL_REQUEST_ID};

pub fn begin_request(out: &mut Vec<u8>, id: u16, role: Role, keep_conn: bool) {
    let [r1, r0] = role.as_u16().to_be_bytes();
    let flags = if keep_conn { KEEP_CONN } else { 0 };
    let body = [r1, r0, flags, 0, 0, 0, 0, 0];
    write_body8(out, RecordType::BeginRequest.as_u8(), id, &body);
}

/// The whole PARAMS stream: pairs split over as many records as needed
/// (a pair may straddle records), then the terminating empty record.
pub fn params<N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, id: u16, pairs: &[(N, V)]) -> Result<(), NvError> {
    let mut body = Vec::new();
    nv::encode_pairs(&mut body, pairs)?;
    write_stream(out, RecordType::Params.as_u8(), id, &body);
    write_stream_end(out, RecordType::Params.as_u8(), id);
    Ok(())
}

/// STDIN data; empty `data` writes nothing.
pub fn stdin(out: &mut Vec<u8>, id: u16, data: &[u8]) {
    write_stream(out, RecordType::Stdin.as_u8(), id, data);
}

pub fn end_stdin(out: &mut Vec<u8>, id: u16) {
    write_stream_end(out, RecordType::Stdin.as_u8(), id);
}

pub fn abort(out: &mut Vec<u8>, id: u16) {
    write_stream_end(out, RecordType::AbortRequest.as_u8(), id);
}

/// GET_VALUES with empty values, as the spec requires.
pub fn get_values<N: AsRef<[u8]>>(out: &mut Vec<u8>, names: &[N]) -> Result<(), EncodeError> {
    let pairs: Vec<(&[u8], &[u8])> = names.iter().map(|n| (n.as_ref(), &b""[..])).collect();
    let mut body = Vec::new();
    nv::encode_pairs(&mut body, &pairs)?;
    write_record(out, RecordType::GetValues.as_u8(), NULL_REQUEST_ID, &body)?;
    Ok(())
}

/// What the application sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Stdout {
        id: u16,
        data: Vec<u8>,
    },
    StdoutEnd {
        id: u16,
    },
    Stderr {
        id: u16,
        data: Vec<u8>,
    },
    StderrEnd {
        id: u16,
    },
    /// `protocol_status` stays raw so unknown values can be reported.
    EndRequest {
        id: u16,
        app_status: u32,
        protocol_status: u8,
    },
    GetValuesResult {
        pairs: Vec<Pair>,
    },
    UnknownType {
        record_type: u8,
    },
}

/// Decodes application-to-web-server records. Stateless beyond framing:
/// it does not track which ids are active.
#[derive(Debug, Default)]
pub struct ClientDecoder {
    framer: Framer,
    error: Option<ProtocolError>,
}

impl ClientDecoder {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.framer.feed(bytes);
    }

    /// Next event, `Ok(None)` if more bytes are needed. Errors are sticky.
    pub fn poll_event(&mut self) -> Result<Option<ClientEvent>, ProtocolError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = match self.framer.next_record() {
            Ok(Some((h, c))) => decode_response(h, c).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }
}

#[allow(clippy::many_single_char_names, reason = "a, b, c, d are the four bytes of appStatus, as in the spec's diagram")]
fn decode_response(h: Header, content: Vec<u8>) -> Result<ClientEvent, ProtocolError> {
    let id = h.request_id;
    let record_type = h.record_type;
    let malformed = |reason| ProtocolError::MalformedBody { record_type, reason };
    let eight = || <[u8; 8]>::try_from(content.as_slice()).map_err(|_| malformed("body must be 8 bytes"));
    Ok(match RecordType::from_u8(record_type) {
        Some(RecordType::Stdout) if content.is_empty() => ClientEvent::StdoutEnd { id },
        Some(RecordType::Stdout) => ClientEvent::Stdout { id, data: content },
        Some(RecordType::Stderr) if content.is_empty() => ClientEvent::StderrEnd { id },
        Some(RecordType::Stderr) => ClientEvent::Stderr { id, data: content },
        Some(RecordType::EndRequest) => {
            let [a, b, c, d, protocol_status, ..] = eight()?;
            ClientEvent::EndRequest { id, app_status: u32::from_be_bytes([a, b, c, d]), protocol_status }
        }
        Some(RecordType::UnknownType) => {
            let [t, ..] = eight()?;
            ClientEvent::UnknownType { record_type: t }
        }
        Some(RecordType::GetValuesResult) if id == NULL_REQUEST_ID => {
            let limit = Limits::default().max_params_pairs;
            let pairs = nv::decode_all(&content, MAX_CONTENT_LEN, limit).map_err(|_| malformed("invalid name-value pairs"))?;
            ClientEvent::GetValuesResult { pairs }
        }
        _ => return Err(ProtocolError::UnexpectedRecordType { record_type, id }),
    })
}
