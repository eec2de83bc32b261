//! FastCGI 1.0, sans-IO: record framing, name-value pairs and the connection state machine
//! (application and client sides). The codec never sees a socket or Python; `conn` is the
//! one place where sockets meet it.

pub mod client;
pub mod codec;
pub mod encode;
pub mod nv;
pub mod record;

pub use client::{ClientDecoder, ClientEvent};
pub use codec::{Config, Connection, EncodeError, Event, Limits, ProtocolError};
pub use nv::{NvDecoder, NvError, Pair};
pub use record::{Header, ProtocolStatus, RecordError, RecordType, Role};
