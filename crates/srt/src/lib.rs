//! Sans-IO SRT (Secure Reliable Transport) live-mode protocol core.
//!
//! Nothing here touches a socket, a thread or a clock: callers feed datagrams and the current
//! time in ([`Connection::handle_input`], [`Listener::handle_input`]) and take datagrams,
//! events and deadlines out. Randomness (socket ids, sequence numbers, keys, salts, SYN-cookie
//! secret) comes from the caller's `rand_core::RngCore`.
pub mod connection;
pub mod crypto;
pub mod listener;
pub mod packet;
pub mod seq;
pub mod streamid;

pub use connection::{
    CloseReason, Connection, ConnectionConfig, Event, MAX_PAYLOAD, SendError, Stats, Transmit,
    reject,
};
pub use listener::{
    AcceptDecision, AcceptHook, ConnectRequest, ConnectionId, Listener, ListenerConfig, Refusal,
    RequestId,
};
pub use streamid::{Mode, StreamId};
