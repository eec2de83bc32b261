//! The protocol-neutral middle of the data path: what every gateway decodes into
//! (`Request`, the body `Spool`) and what the WSGI side answers through (`Response`,
//! `ResponseSink`). No Python, no wire protocol.

pub(crate) mod authorizer;
pub(crate) mod doctor;
pub mod request;
pub(crate) mod response;
pub mod role;
pub(crate) mod spool;
