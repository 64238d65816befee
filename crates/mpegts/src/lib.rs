//! Sans-IO MPEG transport stream building blocks for the live data plane.
//!
//! Everything here is a function or a state machine fed bytes and timestamps: no sockets,
//! no clock reads, no threads. The pieces:
//!
//! - [`TsAlignment::check`]: is a datagram 188-byte-aligned MPEG-TS (bare or in RTP)?
//! - [`TsPacket`], [`SectionAssembler`], [`Pat`], [`Pmt`], [`PesHeader`]: parsing.
//! - [`Tr101290Monitor`]: ETSI TR 101 290 priority 1/2 measurements and bitrates.
//! - [`RtpPacket`], [`seq_diff`]: RTP (RFC 3550) and sequence arithmetic.
//! - [`Merger`]: SMPTE ST 2022-7 hitless merge of two RTP paths.
//! - [`FailoverSwitch`]: primary/backup TS switching with continuity repair.

pub mod align;
pub mod failover;
pub mod merge;
pub mod packet;
pub mod pes;
pub mod psi;
pub mod rtp;
pub mod tr101290;

pub use align::{AlignmentError, TsAlignment};
pub use failover::{FailoverConfig, FailoverSwitch, Source, SwitchEvent, SwitchReason};
pub use merge::{MergedPacket, Merger, MergerConfig, Path, PathStats};
pub use packet::{AdaptationField, PacketError, Pcr, TS_PACKET_SIZE, TsHeader, TsPacket};
pub use pes::{PesError, PesHeader};
pub use psi::{Pat, Pmt, PmtStream, PsiError, SectionAssembler, StreamKind};
pub use rtp::{RtpError, RtpHeader, RtpPacket, SeqExtender, seq_diff};
pub use tr101290::{ErrorKind, Tr101290Config, Tr101290Event, Tr101290Monitor};
