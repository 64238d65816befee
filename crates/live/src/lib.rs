//! The Live Cloud data plane: venue feeds come in, licensed broadcasters' outputs go out.
//!
//! A flow's packets travel through one [`fanout::FlowBus`]: sources publish TS chunks into it,
//! every output holds a cursor into the same ring, so a payload is stored once however many
//! broadcasters receive it.

pub mod access;
pub mod fanout;
pub mod flow;
pub mod node;
pub mod output;
pub mod source;
pub mod udp;
