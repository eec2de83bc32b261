//! FastCGI 1.0, sans-IO: record framing, name-value pairs and the connection state machine
//! (application and client sides). The codec never sees a socket or Python; the socket
//! layer and the responder that feed it are the next issue's work.

pub mod codec;
pub mod nv;
pub mod record;

pub use codec::client::{ClientDecoder, ClientEvent};
pub use codec::{Config, Connection, EncodeError, Event, Limits, ProtocolError};
pub use nv::{NvDecoder, NvError, Pair};
pub use record::{Header, ProtocolStatus, RecordError, RecordType, Role};
