//! Test support shared by stadion's integration tests, which check the product against real
//! peers (libsrt's `srt-live-transmit`, ffmpeg, ffprobe) rather than mocks of them.
//!
//! - [`Peer`]: a peer program in its own temporary directory, killed when the test ends
//!   (passes or panics), its stderr kept for the failure message.
//! - [`LiveTransmit`]: `srt-live-transmit` with the options the tests use, and its JSON
//!   statistics ([`libsrt_stats`]).
//! - [`free_port`], [`udp_sink`], [`collect_udp`], [`Feeding`], [`udp_drops`]: ports, a UDP
//!   sink with room to spare, a UDP source that keeps a peer's input busy (libsrt connects its
//!   output only once its input has data), and what a full socket buffer dropped.
//! - [`payload`], [`make_ts`], [`probe`], [`ffmpeg_copy`]: numbered test payloads, a real
//!   MPEG-TS feed, and ffmpeg moving one without re-encoding.
//! - [`LossyRelay`]: an impaired UDP link (delay and seeded loss) between an SRT caller and
//!   listener that keeps a log to explain an unrecovered packet.
//!
//! A dev-dependency only (`publish = false`).

mod feed;
mod libsrt;
mod net;
mod peer;
mod relay;

pub use feed::{ffmpeg_copy, make_ts, payload, payload_id, probe};
pub use libsrt::{LiveTransmit, libsrt_stats};
pub use net::{Feeding, collect_udp, free_port, udp_drops, udp_sink};
pub use peer::{Peer, require};
pub use relay::{LossyRelay, RelayEvent, RelayKind};
