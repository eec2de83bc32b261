//! Application-to-web-server records (STDOUT, STDERR, END_REQUEST, the management
//! answers), appended to a `Vec<u8>`: the application side's encoder.

use super::codec::EncodeError;
use super::nv;
use super::record::{write_body8, write_record, write_stream, write_stream_end, ProtocolStatus, RecordType, NULL_REQUEST_ID};

/// STDOUT data in records of <= 65535 bytes; empty `data` writes nothing.
pub fn stdout(out: &mut Vec<u8>, id: u16, data: &[u8]) {
    write_stream(out, RecordType::Stdout.as_u8(), id, data);
}

/// The empty STDOUT record closing the stream.
pub fn end_stdout(out: &mut Vec<u8>, id: u16) {
    write_stream_end(out, RecordType::Stdout.as_u8(), id);
}

/// STDERR data in records of <= 65535 bytes; empty `data` writes nothing.
pub fn stderr(out: &mut Vec<u8>, id: u16, data: &[u8]) {
    write_stream(out, RecordType::Stderr.as_u8(), id, data);
}

/// The empty STDERR record closing the stream.
pub fn end_stderr(out: &mut Vec<u8>, id: u16) {
    write_stream_end(out, RecordType::Stderr.as_u8(), id);
}

pub fn end_request(out: &mut Vec<u8>, id: u16, app_status: u32, status: ProtocolStatus) {
    let [a, b, c, d] = app_status.to_be_bytes();
    let body = [a, b, c, d, status.as_u8(), 0, 0, 0];
    write_body8(out, RecordType::EndRequest.as_u8(), id, &body);
}

/// One GET_VALUES_RESULT record; errors if the body exceeds 65535 bytes.
pub fn get_values_result<N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(N, V)]) -> Result<(), EncodeError> {
    let mut body = Vec::new();
    nv::encode_pairs(&mut body, pairs)?;
    write_record(out, RecordType::GetValuesResult.as_u8(), NULL_REQUEST_ID, &body)?;
    Ok(())
}

pub fn unknown_type(out: &mut Vec<u8>, record_type: u8) {
    let body = [record_type, 0, 0, 0, 0, 0, 0, 0];
    write_body8(out, RecordType::UnknownType.as_u8(), NULL_REQUEST_ID, &body);
}
