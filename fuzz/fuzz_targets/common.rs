//! The property checked by each fuzz target, as plain functions over `&[u8]` that use only
//! the `cgi2wsgi` crate and std. Shared (as a `#[path]` module) by the libFuzzer targets in
//! this directory and by `tests/fuzz_replay.rs`, which replays the committed corpus on
//! stable. Every function must return normally for every input: a panic is a finding.
//!
//! Input layouts (the leading bytes pick configuration, the rest is the payload):
//! - `fcgi_server`: `[config][schedule][stream...]`
//! - `fcgi_client`: `[schedule][stream...]`
//! - `nv_decode`: `[max_bytes/4][max_pairs][schedule][nv bytes...]`
//! - `request_params`: `[limit][pair...]`, each pair `[n][v][name bytes][value bytes]`
//!   where a length byte with the top bit set picks a well-known name/value instead.
//! - `percent_decode`: the raw bytes.

use cgi2wsgi::fastcgi::encode;
use cgi2wsgi::fastcgi::nv::{self, NvDecoder, NvError, Pair};
use cgi2wsgi::fastcgi::{ClientDecoder, ClientEvent, Config, Connection, Event, Limits, ProtocolError, ProtocolStatus};
use cgi2wsgi::http::request::{self, BodyLength, Request};

/// Deterministic xorshift generator: chunk sizes and `finish` decisions depend only on a
/// seed byte, so a run is reproducible from the input alone.
struct Rng(u32);

impl Rng {
    fn new(seed: u8, salt: u32) -> Self {
        // Never zero: xorshift would stay at zero forever.
        Rng((u32::from(seed) << 8 | 0x9e37_0001) ^ salt)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A value in `1..=max` (`max` >= 1).
    fn between_1_and(&mut self, max: usize) -> usize {
        let r = usize::try_from(self.next()).unwrap_or(0);
        r % max.max(1) + 1
    }
}

/// Splits `data` into chunks whose sizes follow `schedule`: the two low bits pick the
/// style (all at once, one byte at a time, up to 16 bytes, up to 300 bytes).
fn chunks(data: &[u8], schedule: u8) -> Vec<&[u8]> {
    let max = match schedule & 3 {
        0 => return vec![data],
        1 => 1,
        2 => 16,
        _ => 300,
    };
    let mut rng = Rng::new(schedule, 0x00c0_ffee);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.between_1_and(max).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Takes the first `n` bytes (fewer if the input ends).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn take_byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// fcgi_server

/// The connection configuration chosen by the first input byte: bit 0 turns multiplexing
/// on, bit 1 selects small limits whose sizes come from the other bits, bit 2 also enables
/// the AUTHORIZER role.
pub fn server_config(b: u8) -> Config {
    let mut config = Config { mpxs_conns: b & 1 != 0, ..Config::default() };
    config.roles.authorizer = b & 4 != 0;
    if b & 2 != 0 {
        let high = usize::from(b >> 4);
        config.limits = Limits { max_params_bytes: 64 * (high + 1), max_params_pairs: high + 1, max_active_requests: usize::from((b >> 2) & 3) + 1 };
    }
    config
}

/// What one run of a connection produced: every event, and how the stream ended.
#[derive(Debug, PartialEq)]
struct ServerRun {
    events: Vec<Event>,
    error: Option<ProtocolError>,
    /// Active requests and buffered bytes at the end (compared only without an error).
    active: usize,
    buffered: bool,
}

/// Drives one `Connection` over `pieces`, calling `finish` after some events.
fn run_server(config: &Config, pieces: &[&[u8]], finish_seed: u8) -> ServerRun {
    let limits = &config.limits;
    let mut conn = Connection::new(config.clone());
    let mut decide = Rng::new(finish_seed, 0x5eed_0000);
    let mut events = Vec::new();
    for piece in pieces {
        conn.feed(piece);
        loop {
            match conn.poll_event() {
                Ok(None) => break,
                Ok(Some(event)) => {
                    check_server_event(&conn, config, &event);
                    // One draw per event, whatever its kind, so the decisions line up
                    // between runs that chunk the stream differently.
                    let finish = decide.next() & 1 == 1;
                    let id = match &event {
                        Event::Request { id, params, role, .. } => {
                            // What the server does next: must not panic either.
                            if let Ok(mut r) = Request::from_params(params.clone(), Some(1 << 20)) {
                                r.serve_as(*role);
                            }
                            Some(*id)
                        }
                        Event::Abort { id } | Event::StdinEnd { id } => Some(*id),
                        _ => None,
                    };
                    if let (true, Some(id)) = (finish, id) {
                        assert!(conn.finish(id).is_some(), "finish({id}) on an active id");
                        assert!(!conn.is_active(id));
                        assert_eq!(conn.finish(id), None, "a second finish({id})");
                    }
                    events.push(event);
                }
                Err(error) => {
                    // Errors are sticky.
                    assert_eq!(conn.poll_event(), Err(error.clone()));
                    conn.feed(b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00");
                    assert_eq!(conn.poll_event(), Err(error.clone()));
                    return ServerRun { events, error: Some(error), active: 0, buffered: false };
                }
            }
            assert!(conn.active_count() <= limits.max_active_requests.max(1));
            if !config.mpxs_conns {
                assert!(conn.active_count() <= 1, "two active requests without FCGI_MPXS_CONNS");
            }
        }
    }
    ServerRun { events, error: None, active: conn.active_count(), buffered: conn.has_buffered() }
}

fn check_server_event(conn: &Connection, config: &Config, event: &Event) {
    let limits = &config.limits;
    match event {
        Event::Request { id, params, role, .. } => {
            assert!(config.roles.contains(*role), "a request in the {role} role, which is not enabled");
            assert_ne!(*id, 0, "a request on the management id");
            assert!(conn.is_active(*id), "Request for an inactive id {id}");
            assert!(params.len() <= limits.max_params_pairs, "more params than the limit");
            let size = params.iter().fold(0usize, |acc, (n, v)| acc.saturating_add(nv::encoded_len(n, v)));
            assert!(size <= limits.max_params_bytes, "params of {size} bytes over the limit");
        }
        Event::Stdin { id, data } => {
            assert!(!data.is_empty(), "an empty Stdin event (that is StdinEnd)");
            assert!(conn.is_active(*id));
        }
        Event::StdinEnd { id } | Event::Abort { id } => {
            assert_ne!(*id, 0);
            assert!(conn.is_active(*id));
        }
        Event::Reject { id, status, role, .. } => {
            assert!(!conn.is_active(*id), "a rejected id {id} is active");
            assert_ne!(*status, ProtocolStatus::RequestComplete);
            // Only a role we serve can be refused for another reason (load).
            let served = match role {
                1 => config.roles.responder,
                2 => config.roles.authorizer,
                _ => false,
            };
            assert_eq!(*status == ProtocolStatus::UnknownRole, !served, "role {role} refused with {status:?}");
        }
        Event::GetValues { names } => {
            // The answer must always encode into one record.
            let answer = config.get_values_answer(names);
            let mut out = Vec::new();
            assert!(encode::get_values_result(&mut out, &answer).is_ok());
        }
        Event::UnknownManagementType { record_type } => {
            assert_ne!(*record_type, 9, "GET_VALUES reported as unknown");
        }
    }
}

/// `fcgi_server`: the application-side state machine over an arbitrary byte stream, fed
/// in arbitrary chunks, never panics, keeps its invariants, and produces the same events
/// whether the stream arrives in one piece or in many.
pub fn fcgi_server(data: &[u8]) {
    let mut data = data;
    let config = server_config(take_byte(&mut data));
    let schedule = take_byte(&mut data);
    let whole = run_server(&config, &[data], schedule);
    let pieces = chunks(data, schedule);
    let chunked = run_server(&config, &pieces, schedule);
    assert_eq!(whole.events, chunked.events, "events depend on how the stream was chunked");
    assert_eq!(whole.error, chunked.error);
    if whole.error.is_none() {
        assert_eq!((whole.active, whole.buffered), (chunked.active, chunked.buffered));
    }
}

// ---------------------------------------------------------------------------------------
// fcgi_client

fn run_client(pieces: &[&[u8]]) -> (Vec<ClientEvent>, Option<ProtocolError>) {
    let mut dec = ClientDecoder::new();
    let mut events = Vec::new();
    for piece in pieces {
        dec.feed(piece);
        loop {
            match dec.poll_event() {
                Ok(None) => break,
                Ok(Some(event)) => {
                    check_client_reencode(&event);
                    events.push(event);
                }
                Err(error) => {
                    assert_eq!(dec.poll_event(), Err(error.clone()), "errors are sticky");
                    return (events, Some(error));
                }
            }
        }
    }
    (events, None)
}

/// An event the application could have sent, encoded with the application-side encoder,
/// decodes back to itself.
fn check_client_reencode(event: &ClientEvent) {
    let mut out = Vec::new();
    match event {
        ClientEvent::Stdout { id, data } => encode::stdout(&mut out, *id, data),
        ClientEvent::StdoutEnd { id } => encode::end_stdout(&mut out, *id),
        ClientEvent::Stderr { id, data } => encode::stderr(&mut out, *id, data),
        ClientEvent::StderrEnd { id } => encode::end_stderr(&mut out, *id),
        ClientEvent::EndRequest { id, app_status, protocol_status } => match ProtocolStatus::from_u8(*protocol_status) {
            Some(status) => encode::end_request(&mut out, *id, *app_status, status),
            None => return,
        },
        ClientEvent::GetValuesResult { pairs } => {
            assert!(encode::get_values_result(&mut out, pairs).is_ok(), "re-encoding a decoded GET_VALUES_RESULT");
        }
        ClientEvent::UnknownType { record_type } => encode::unknown_type(&mut out, *record_type),
    }
    let mut dec = ClientDecoder::new();
    dec.feed(&out);
    assert_eq!(dec.poll_event(), Ok(Some(event.clone())), "re-encoded event decodes differently");
    assert_eq!(dec.poll_event(), Ok(None));
}

/// `fcgi_client`: the web-server-side response decoder never panics and does not depend
/// on chunking; each decoded event survives a re-encode.
pub fn fcgi_client(data: &[u8]) {
    let mut data = data;
    let schedule = take_byte(&mut data);
    let whole = run_client(&[data]);
    let chunked = run_client(&chunks(data, schedule));
    assert_eq!(whole, chunked, "client events depend on how the stream was chunked");
}

// ---------------------------------------------------------------------------------------
// nv_decode

fn decode_incremental(pieces: &[&[u8]], max_bytes: usize, max_pairs: usize) -> Result<Vec<Pair>, NvError> {
    let mut dec = NvDecoder::new(max_bytes, max_pairs);
    // Each pair as it was when it first appeared (copying only the new ones keeps this
    // linear); the final list must still hold exactly those.
    let mut seen: Vec<Pair> = Vec::new();
    for piece in pieces {
        dec.push(piece)?;
        let now = dec.pairs();
        assert!(now.len() >= seen.len(), "decoded pairs disappeared between pushes");
        seen.extend_from_slice(now.get(seen.len()..).unwrap_or_default());
    }
    let pairs = dec.finish()?;
    assert_eq!(pairs, seen, "decoded pairs changed between pushes");
    Ok(pairs)
}

fn check_nv(data: &[u8], pieces: &[&[u8]], max_bytes: usize, max_pairs: usize) -> Result<Vec<Pair>, NvError> {
    let all = nv::decode_all(data, max_bytes, max_pairs);
    let inc = decode_incremental(pieces, max_bytes, max_pairs);
    match (&all, &inc) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decode_all and chunked pushes disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!("decode_all gave {all:?}, chunked pushes gave {inc:?}"),
    }
    match &all {
        Ok(pairs) => {
            assert!(data.len() <= max_bytes);
            assert!(pairs.len() <= max_pairs);
            // Round trip: the canonical encoding decodes to the same pairs, and is never
            // longer than the input (which may use 4-byte lengths for short values).
            let mut encoded = Vec::new();
            nv::encode_pairs(&mut encoded, pairs).expect("decoded pairs re-encode");
            let sum = pairs.iter().fold(0usize, |acc, (n, v)| acc + nv::encoded_len(n, v));
            assert_eq!(encoded.len(), sum);
            assert!(encoded.len() <= data.len());
            assert_eq!(nv::decode_all(&encoded, encoded.len(), pairs.len()).as_ref(), Ok(pairs));
        }
        Err(e) => assert!(!matches!(e, NvError::LengthTooLarge(_)), "decoder returned an encoder error"),
    }
    all
}

/// `nv_decode`: name-value decoding under small and default limits, in one go and in
/// chunks, agrees with itself and round-trips through the encoder.
pub fn nv_decode(data: &[u8]) {
    let mut data = data;
    let max_bytes = usize::from(take_byte(&mut data)) * 4;
    let max_pairs = usize::from(take_byte(&mut data) % 32);
    let schedule = take_byte(&mut data);
    let pieces = chunks(data, schedule);
    let small = check_nv(data, &pieces, max_bytes, max_pairs);
    let default = check_nv(data, &pieces, 1 << 20, 10_000);
    if let Ok(pairs) = small {
        assert_eq!(default, Ok(pairs), "accepted under small limits but not under default ones");
    }
    // Lengths alone: whatever 31-bit value the input spells round-trips.
    if let Some(b) = data.get(..4) {
        let len = usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff).unwrap_or(0);
        let mut out = Vec::new();
        nv::encode_len(&mut out, len).expect("31-bit lengths encode");
        assert_eq!(nv::decode_len(&out), Some((len, out.len())));
    }
}

// ---------------------------------------------------------------------------------------
// request_params

/// Names the normalisation looks at, so the fuzzer reaches those paths quickly.
const NAMES: [&str; 16] = [
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "HTTP_CONTENT_TYPE",
    "HTTP_CONTENT_LENGTH",
    "HTTP_TRANSFER_ENCODING",
    "SERVER_SOFTWARE",
    "HTTPS",
    "REQUEST_SCHEME",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SERVER_NAME",
    "HTTP_HOST",
    "GATEWAY_INTERFACE",
];

const VALUES: [&str; 16] = [
    "",
    "/",
    "//",
    "/app.cgi",
    "/app.cgi/x",
    "Microsoft-IIS/10.0",
    "on",
    "https",
    "chunked",
    "0",
    "12",
    " 7 ",
    "18446744073709551616",
    "%2F%zz%",
    "\u{e9}",
    "x",
];

/// A name or value: a length byte with the top bit set picks `table[low bits]`, any other
/// length byte is followed by that many raw bytes.
fn pick_or_take(data: &mut &[u8], len_byte: u8, table: &[&str]) -> Vec<u8> {
    if len_byte & 0x80 != 0 {
        let pick = usize::from(len_byte & 0x7f) % table.len();
        table.get(pick).map(|s| s.as_bytes().to_vec()).unwrap_or_default()
    } else {
        take(data, usize::from(len_byte)).to_vec()
    }
}

/// RFC 3986 `%XX` decoding spelled out: two ASCII hex digits after `%`, anything else
/// (including `%+1`, which `u8::from_str_radix` would accept) stays as it is.
fn percent_decode_reference(raw: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&first, tail)) = rest.split_first() {
        if let (b'%', [h, l, after @ ..]) = (first, tail) {
            if let (Some(h), Some(l)) = (hex(*h), hex(*l)) {
                out.push(h << 4 | l);
                rest = after;
                continue;
            }
        }
        out.push(first);
        rest = tail;
    }
    out
}

/// `request_params`: any sequence of raw CGI params gives `Ok` or a clean `Err`, and an
/// `Ok` request keeps the WSGI invariants.
pub fn request_params(data: &[u8]) {
    let mut data = data;
    let lb = take_byte(&mut data);
    let limit = if lb & 0x80 != 0 { u64::MAX >> (lb & 63) } else { u64::from(lb) * 16 };
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while !data.is_empty() {
        let (nb, vb) = (take_byte(&mut data), take_byte(&mut data));
        let name = pick_or_take(&mut data, nb, &NAMES);
        let value = pick_or_take(&mut data, vb, &VALUES);
        pairs.push((name, value));
    }
    for (name, value) in &pairs {
        for bytes in [name, value] {
            let s = request::latin1(bytes);
            assert!(s.chars().map(u32::from).eq(bytes.iter().map(|&b| u32::from(b))), "latin1 is not byte-for-byte");
        }
    }
    let last_script = pairs.iter().rev().find(|(n, _)| n == b"SCRIPT_NAME").map(|(_, v)| v.clone());
    match Request::from_params(pairs, Some(limit)) {
        Ok(req) => {
            for key in ["QUERY_STRING", "PATH_INFO", "SCRIPT_NAME"] {
                assert!(req.get(key).is_some(), "{key} missing");
            }
            assert_ne!(req.get("SCRIPT_NAME"), Some("/"), "SCRIPT_NAME is \"/\"");
            if last_script.as_deref() == Some(b"/") {
                assert!(req.get("PATH_INFO").is_some_and(|p| p.starts_with('/')), "root mount without a leading / in PATH_INFO");
            }
            for (name, _) in &req.vars {
                assert!(name != "HTTP_CONTENT_TYPE" && name != "HTTP_CONTENT_LENGTH", "shadow header {name} kept");
            }
            assert!(req.scheme == "http" || req.scheme == "https");
            if let BodyLength::Exact(n) = req.body {
                assert!(n > 0 && n <= limit, "body length {n} with limit {limit}");
            }
        }
        Err(cgi2wsgi::error::RequestError::BodyTooLarge { length, limit: l }) => {
            assert_eq!(l, limit);
            assert!(length > limit);
        }
        Err(cgi2wsgi::error::RequestError::BadContentLength(_)) => {}
    }
}

// ---------------------------------------------------------------------------------------
// percent_decode

/// `percent_decode`: `request::percent_decode` (used for ISINDEX argv words and by
/// `doctor`) decodes exactly the `%XX` escapes with two hex digits and leaves every
/// malformed escape as it is, as its doc comment promises.
pub fn percent_decode(data: &[u8]) {
    let got = request::percent_decode(data);
    assert!(got.len() <= data.len());
    assert_eq!(got, percent_decode_reference(data), "percent_decode of {data:?}");
}
