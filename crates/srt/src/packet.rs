//! SRT packet codec (draft-sharabayko-srt §3): data packets and every control type.
//!
//! Decoding never panics: malformed input is refused with a [`DecodeError`] naming the field and
//! its byte offset in the datagram.

use bytes::Bytes;

use crate::seq::SeqNo;

/// Length of the fixed SRT header (four 32-bit words).
pub const HEADER_LEN: usize = 16;
/// The SRT magic in the handshake extension field of a v5 induction response.
pub const SRT_MAGIC: u16 = 0x4A17;
/// Handshake extension flag bits (conclusion request, HSv5).
pub const HS_EXT_HSREQ: u16 = 1;
pub const HS_EXT_KMREQ: u16 = 2;
pub const HS_EXT_CONFIG: u16 = 4;

/// SRT flags in HSREQ/HSRSP.
pub mod flags {
    pub const TSBPD_SND: u32 = 0x01;
    pub const TSBPD_RCV: u32 = 0x02;
    pub const CRYPT: u32 = 0x04;
    pub const TLPKTDROP: u32 = 0x08;
    pub const PERIODIC_NAK: u32 = 0x10;
    pub const REXMIT_FLG: u32 = 0x20;
    pub const STREAM: u32 = 0x40;
    pub const PACKET_FILTER: u32 = 0x80;
}

/// Why a datagram could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what} truncated at byte {offset}: need {need} bytes, datagram has {have}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("invalid {field} at byte {offset}: {value:#x}")]
    InvalidField {
        field: &'static str,
        offset: usize,
        value: u32,
    },
    #[error("stream ID at byte {offset} is not UTF-8")]
    StreamIdNotUtf8 { offset: usize },
}

/// Where a data packet sits in its message (PP bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Middle,
    Last,
    First,
    Solo,
}

/// Which stream-encrypting key a data packet uses (KK bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyParity {
    None,
    Even,
    Odd,
}

impl KeyParity {
    fn bits(self) -> u32 {
        match self {
            KeyParity::None => 0,
            KeyParity::Even => 1,
            KeyParity::Odd => 2,
        }
    }
}

/// A data packet; the payload is shared (`Bytes`) so fan-out never copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket {
    pub seq: SeqNo,
    pub position: Position,
    pub in_order: bool,
    pub key: KeyParity,
    pub retransmitted: bool,
    /// 26-bit message number.
    pub msg_no: u32,
    pub timestamp: u32,
    pub dest_socket: u32,
    pub payload: Bytes,
}

impl DataPacket {
    /// The 16 header bytes; the datagram is these followed by `payload`.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let pp = match self.position {
            Position::Middle => 0,
            Position::Last => 1,
            Position::First => 2,
            Position::Solo => 3,
        };
        let w1 = (pp << 30)
            | (u32::from(self.in_order) << 29)
            | (self.key.bits() << 27)
            | (u32::from(self.retransmitted) << 26)
            | (self.msg_no & 0x03FF_FFFF);
        header_words(self.seq.value(), w1, self.timestamp, self.dest_socket)
    }
}

fn header_words(w0: u32, w1: u32, w2: u32, w3: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&w0.to_be_bytes());
    h[4..8].copy_from_slice(&w1.to_be_bytes());
    h[8..12].copy_from_slice(&w2.to_be_bytes());
    h[12..16].copy_from_slice(&w3.to_be_bytes());
    h
}

/// A control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    pub timestamp: u32,
    pub dest_socket: u32,
    pub control: Control,
}

/// The body of a control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Handshake(Handshake),
    KeepAlive,
    Ack(Ack),
    /// Loss report: ranges of missing sequence numbers (inclusive).
    Nak(Vec<(SeqNo, SeqNo)>),
    CongestionWarning,
    Shutdown,
    AckAck {
        ack_no: u32,
    },
    DropRequest {
        msg_no: u32,
        first: SeqNo,
        last: SeqNo,
    },
    PeerError {
        code: u32,
    },
    /// Key material refresh sent after the handshake (user-defined type, subtype 3).
    KmReq(KeyMaterial),
    /// Answer to a [`Control::KmReq`] (subtype 4).
    KmRsp(KmResponse),
    /// Any other user-defined control message, kept verbatim.
    UserDefined {
        subtype: u16,
        type_info: u32,
        body: Bytes,
    },
}

/// ACK body: full (every 10 ms, answered by ACKACK), small or light (only the sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// ACK sequence number (0 for light ACKs).
    pub ack_no: u32,
    /// The first sequence number not yet received.
    pub last_ack: SeqNo,
    pub info: Option<AckInfo>,
}

/// The statistics a full (or small) ACK carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckInfo {
    pub rtt_us: u32,
    pub rtt_var_us: u32,
    pub buffer_available: u32,
    /// `None` for a small ACK (4 words).
    pub rates: Option<AckRates>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRates {
    pub packets_per_sec: u32,
    pub capacity_pps: u32,
    pub bytes_per_sec: u32,
}

/// Handshake message kinds (the handshake type field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    WaveAHand,
    Induction,
    Conclusion,
    Agreement,
    Done,
    /// Rejection: the wire value is 1000 + `reason`.
    Reject(u32),
}

impl HandshakeKind {
    fn to_wire(self) -> u32 {
        match self {
            HandshakeKind::WaveAHand => 0,
            HandshakeKind::Induction => 1,
            HandshakeKind::Conclusion => 0xFFFF_FFFF,
            HandshakeKind::Agreement => 0xFFFF_FFFE,
            HandshakeKind::Done => 0xFFFF_FFFD,
            HandshakeKind::Reject(reason) => 1000u32.wrapping_add(reason),
        }
    }

    fn from_wire(v: u32, offset: usize) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => HandshakeKind::WaveAHand,
            1 => HandshakeKind::Induction,
            0xFFFF_FFFF => HandshakeKind::Conclusion,
            0xFFFF_FFFE => HandshakeKind::Agreement,
            0xFFFF_FFFD => HandshakeKind::Done,
            1000..=0x7FFF_FFFF => HandshakeKind::Reject(v - 1000),
            _ => {
                return Err(DecodeError::InvalidField {
                    field: "handshake type",
                    offset,
                    value: v,
                });
            }
        })
    }
}

/// Handshake control information field plus its HSv5 extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub version: u32,
    /// Encryption field: 0 none, 2/3/4 = AES-128/192/256 advertised.
    pub encryption: u16,
    pub extension_field: u16,
    pub initial_seq: SeqNo,
    pub mtu: u32,
    pub flow_window: u32,
    pub kind: HandshakeKind,
    pub socket_id: u32,
    pub cookie: u32,
    pub peer_ip: [u8; 16],
    pub extensions: Vec<HsExtension>,
}

/// HSv5 handshake extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsExtension {
    HsReq(SrtHs),
    HsRsp(SrtHs),
    KmReq(KeyMaterial),
    KmRsp(KmResponse),
    StreamId(String),
    /// Congestion, filter, group and future extensions, kept verbatim.
    Other {
        ext_type: u16,
        body: Vec<u8>,
    },
}

/// HSREQ/HSRSP body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtHs {
    /// Version as 0x00MMmmpp.
    pub version: u32,
    pub flags: u32,
    /// TSBPD delay this side applies when receiving (ms).
    pub recv_delay_ms: u16,
    /// TSBPD delay this side asks the peer to apply (ms).
    pub send_delay_ms: u16,
}

/// Key material message (KMREQ, or KMRSP echo), draft-sharabayko-srt §3.2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// KK bits: 1 even, 2 odd, 3 both (wrapped keys in that order).
    pub keys: u8,
    pub cipher: u8,
    pub salt: [u8; 16],
    /// Length of one stream-encrypting key in bytes (16, 24 or 32).
    pub key_len: usize,
    /// RFC 3394-wrapped keys: 8 + n * key_len bytes.
    pub wrapped: Vec<u8>,
}

/// KMRSP: either the echoed key material (success) or a failure state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmResponse {
    Echo(KeyMaterial),
    /// KM state: 3 = no secret, 4 = bad secret.
    Failure(u32),
}

const KM_SIGN: u16 = 0x2029;
const KM_CIPHER_AES_CTR: u8 = 2;

impl KeyMaterial {
    pub fn new(keys: u8, salt: [u8; 16], key_len: usize, wrapped: Vec<u8>) -> Self {
        KeyMaterial {
            keys,
            cipher: KM_CIPHER_AES_CTR,
            salt,
            key_len,
            wrapped,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // S=0, V=1, PT=2 (keying material), signature, KK.
        out.extend_from_slice(&[0x12, (KM_SIGN >> 8) as u8, KM_SIGN as u8, self.keys & 3]);
        out.extend_from_slice(&0u32.to_be_bytes()); // KEKI
        out.extend_from_slice(&[self.cipher, 0, 2, 0]); // auth none, SE=2 (SRT)
        out.extend_from_slice(&[0, 0, 4, (self.key_len / 4) as u8]);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.wrapped);
    }

    fn decode(b: &[u8], base: usize) -> Result<Self, DecodeError> {
        need(b, 16, "key material header", base)?;
        if b[0] != 0x12 || u16::from_be_bytes([b[1], b[2]]) != KM_SIGN {
            let value = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            return Err(DecodeError::InvalidField {
                field: "KM version/signature",
                offset: base,
                value,
            });
        }
        let keys = b[3] & 3;
        if keys == 0 {
            return Err(DecodeError::InvalidField {
                field: "KM key flags",
                offset: base + 3,
                value: 0,
            });
        }
        let salt_len = usize::from(b[14]) * 4;
        let key_len = usize::from(b[15]) * 4;
        if salt_len != 16 {
            return Err(DecodeError::InvalidField {
                field: "KM salt length",
                offset: base + 14,
                value: b[14].into(),
            });
        }
        if !matches!(key_len, 16 | 24 | 32) {
            return Err(DecodeError::InvalidField {
                field: "KM key length",
                offset: base + 15,
                value: b[15].into(),
            });
        }
        let n = if keys == 3 { 2 } else { 1 };
        let wrapped_len = 8 + n * key_len;
        need(b, 32 + wrapped_len, "wrapped keys", base)?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&b[16..32]);
        Ok(KeyMaterial {
            keys,
            cipher: b[8],
            salt,
            key_len,
            wrapped: b[32..32 + wrapped_len].to_vec(),
        })
    }
}

impl KmResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            KmResponse::Echo(km) => km.encode(out),
            KmResponse::Failure(state) => out.extend_from_slice(&state.to_be_bytes()),
        }
    }

    fn decode(b: &[u8], base: usize) -> Result<Self, DecodeError> {
        if b.len() < 16 {
            need(b, 4, "KMRSP state", base)?;
            return Ok(KmResponse::Failure(be32(b, 0)));
        }
        KeyMaterial::decode(b, base).map(KmResponse::Echo)
    }
}

/// Any SRT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Data(DataPacket),
    Control(ControlPacket),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn need(b: &[u8], n: usize, what: &'static str, offset: usize) -> Result<(), DecodeError> {
    if b.len() < n {
        Err(DecodeError::Truncated {
            what,
            offset: offset + b.len(),
            need: n,
            have: b.len(),
        })
    } else {
        Ok(())
    }
}

/// Cheap peek at the destination socket id, for demultiplexing before a full decode.
pub fn peek_dest_socket(datagram: &[u8]) -> Option<u32> {
    (datagram.len() >= HEADER_LEN).then(|| be32(datagram, 12))
}

const CTRL_HANDSHAKE: u16 = 0;
const CTRL_KEEPALIVE: u16 = 1;
const CTRL_ACK: u16 = 2;
const CTRL_NAK: u16 = 3;
const CTRL_CONGESTION: u16 = 4;
const CTRL_SHUTDOWN: u16 = 5;
const CTRL_ACKACK: u16 = 6;
const CTRL_DROPREQ: u16 = 7;
const CTRL_PEERERROR: u16 = 8;
const CTRL_USER: u16 = 0x7FFF;
const EXT_KMREQ: u16 = 3;
const EXT_KMRSP: u16 = 4;

impl Packet {
    /// Decodes one datagram. `datagram` is taken as `Bytes` so data payloads are sliced, not copied.
    pub fn decode(datagram: Bytes) -> Result<Packet, DecodeError> {
        let b = &datagram[..];
        need(b, HEADER_LEN, "header", 0)?;
        let w0 = be32(b, 0);
        let w1 = be32(b, 4);
        let timestamp = be32(b, 8);
        let dest_socket = be32(b, 12);
        if w0 & 0x8000_0000 == 0 {
            let position = match w1 >> 30 {
                0 => Position::Middle,
                1 => Position::Last,
                2 => Position::First,
                _ => Position::Solo,
            };
            let key = match (w1 >> 27) & 3 {
                0 => KeyParity::None,
                1 => KeyParity::Even,
                2 => KeyParity::Odd,
                v => {
                    return Err(DecodeError::InvalidField {
                        field: "encryption key flags",
                        offset: 4,
                        value: v,
                    });
                }
            };
            return Ok(Packet::Data(DataPacket {
                seq: SeqNo::new(w0),
                position,
                in_order: w1 & (1 << 29) != 0,
                key,
                retransmitted: w1 & (1 << 26) != 0,
                msg_no: w1 & 0x03FF_FFFF,
                timestamp,
                dest_socket,
                payload: datagram.slice(HEADER_LEN..),
            }));
        }
        let ctype = ((w0 >> 16) & 0x7FFF) as u16;
        let subtype = w0 as u16;
        let body = &b[HEADER_LEN..];
        let control = match ctype {
            CTRL_HANDSHAKE => Control::Handshake(Handshake::decode(body)?),
            CTRL_KEEPALIVE => Control::KeepAlive,
            CTRL_ACK => Control::Ack(decode_ack(w1, body)?),
            CTRL_NAK => Control::Nak(decode_loss_list(body)?),
            CTRL_CONGESTION => Control::CongestionWarning,
            CTRL_SHUTDOWN => Control::Shutdown,
            CTRL_ACKACK => Control::AckAck { ack_no: w1 },
            CTRL_DROPREQ => {
                need(body, 8, "drop request", HEADER_LEN)?;
                Control::DropRequest {
                    msg_no: w1,
                    first: SeqNo::new(be32(body, 0)),
                    last: SeqNo::new(be32(body, 4)),
                }
            }
            CTRL_PEERERROR => Control::PeerError { code: w1 },
            CTRL_USER if subtype == EXT_KMREQ => {
                Control::KmReq(KeyMaterial::decode(body, HEADER_LEN)?)
            }
            CTRL_USER if subtype == EXT_KMRSP => {
                Control::KmRsp(KmResponse::decode(body, HEADER_LEN)?)
            }
            CTRL_USER => Control::UserDefined {
                subtype,
                type_info: w1,
                body: datagram.slice(HEADER_LEN..),
            },
            other => {
                return Err(DecodeError::InvalidField {
                    field: "control type",
                    offset: 0,
                    value: other.into(),
                });
            }
        };
        Ok(Packet::Control(ControlPacket {
            timestamp,
            dest_socket,
            control,
        }))
    }

    /// Encodes the whole datagram (used for control packets and tests; the send path for data
    /// packets uses [`DataPacket::header`] plus the shared payload).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Data(d) => {
                out.extend_from_slice(&d.header());
                out.extend_from_slice(&d.payload);
            }
            Packet::Control(c) => c.encode(out),
        }
    }

    pub fn dest_socket(&self) -> u32 {
        match self {
            Packet::Data(d) => d.dest_socket,
            Packet::Control(c) => c.dest_socket,
        }
    }
}

fn decode_ack(ack_no: u32, body: &[u8]) -> Result<Ack, DecodeError> {
    need(body, 4, "ACK", HEADER_LEN)?;
    let last_ack = SeqNo::new(be32(body, 0));
    let info = if body.len() >= 16 {
        let rates = (body.len() >= 28).then(|| AckRates {
            packets_per_sec: be32(body, 16),
            capacity_pps: be32(body, 20),
            bytes_per_sec: be32(body, 24),
        });
        Some(AckInfo {
            rtt_us: be32(body, 4),
            rtt_var_us: be32(body, 8),
            buffer_available: be32(body, 12),
            rates,
        })
    } else {
        None
    };
    Ok(Ack {
        ack_no,
        last_ack,
        info,
    })
}

fn decode_loss_list(body: &[u8]) -> Result<Vec<(SeqNo, SeqNo)>, DecodeError> {
    let mut out = Vec::with_capacity(body.len() / 4);
    let mut i = 0;
    while i + 4 <= body.len() {
        let w = be32(body, i);
        if w & 0x8000_0000 != 0 {
            need(&body[i..], 8, "NAK range end", HEADER_LEN + i)?;
            let last = be32(body, i + 4);
            if last & 0x8000_0000 != 0 {
                return Err(DecodeError::InvalidField {
                    field: "NAK range end",
                    offset: HEADER_LEN + i + 4,
                    value: last,
                });
            }
            out.push((SeqNo::new(w), SeqNo::new(last)));
            i += 8;
        } else {
            out.push((SeqNo::new(w), SeqNo::new(w)));
            i += 4;
        }
    }
    Ok(out)
}

impl ControlPacket {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (ctype, subtype, type_info) = match &self.control {
            Control::Handshake(_) => (CTRL_HANDSHAKE, 0, 0),
            Control::KeepAlive => (CTRL_KEEPALIVE, 0, 0),
            Control::Ack(a) => (CTRL_ACK, 0, a.ack_no),
            Control::Nak(_) => (CTRL_NAK, 0, 0),
            Control::CongestionWarning => (CTRL_CONGESTION, 0, 0),
            Control::Shutdown => (CTRL_SHUTDOWN, 0, 0),
            Control::AckAck { ack_no } => (CTRL_ACKACK, 0, *ack_no),
            Control::DropRequest { msg_no, .. } => (CTRL_DROPREQ, 0, *msg_no),
            Control::PeerError { code } => (CTRL_PEERERROR, 0, *code),
            Control::KmReq(_) => (CTRL_USER, EXT_KMREQ, 0),
            Control::KmRsp(_) => (CTRL_USER, EXT_KMRSP, 0),
            Control::UserDefined {
                subtype, type_info, ..
            } => (CTRL_USER, *subtype, *type_info),
        };
        let w0 = 0x8000_0000 | (u32::from(ctype) << 16) | u32::from(subtype);
        out.extend_from_slice(&header_words(
            w0,
            type_info,
            self.timestamp,
            self.dest_socket,
        ));
        match &self.control {
            Control::Handshake(hs) => hs.encode(out),
            // libsrt sends one padding word with these bodies.
            Control::KeepAlive
            | Control::Shutdown
            | Control::AckAck { .. }
            | Control::PeerError { .. } => out.extend_from_slice(&[0; 4]),
            Control::CongestionWarning => {}
            Control::Ack(a) => {
                out.extend_from_slice(&a.last_ack.value().to_be_bytes());
                if let Some(info) = a.info {
                    for w in [info.rtt_us, info.rtt_var_us, info.buffer_available] {
                        out.extend_from_slice(&w.to_be_bytes());
                    }
                    if let Some(r) = info.rates {
                        for w in [r.packets_per_sec, r.capacity_pps, r.bytes_per_sec] {
                            out.extend_from_slice(&w.to_be_bytes());
                        }
                    }
                }
            }
            Control::Nak(ranges) => {
                for &(first, last) in ranges {
                    if first == last {
                        out.extend_from_slice(&first.value().to_be_bytes());
                    } else {
                        out.extend_from_slice(&(first.value() | 0x8000_0000).to_be_bytes());
                        out.extend_from_slice(&last.value().to_be_bytes());
                    }
                }
            }
            Control::DropRequest { first, last, .. } => {
                out.extend_from_slice(&first.value().to_be_bytes());
                out.extend_from_slice(&last.value().to_be_bytes());
            }
            Control::KmReq(km) => km.encode(out),
            Control::KmRsp(r) => r.encode(out),
            Control::UserDefined { body, .. } => out.extend_from_slice(body),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

const EXT_HSREQ: u16 = 1;
const EXT_HSRSP: u16 = 2;
const EXT_SID: u16 = 5;
/// The handshake CIF without extensions.
const HS_CIF_LEN: usize = 48;
/// libsrt refuses stream IDs longer than this.
pub const MAX_STREAM_ID_LEN: usize = 512;

impl Handshake {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.encryption.to_be_bytes());
        out.extend_from_slice(&self.extension_field.to_be_bytes());
        for w in [
            self.initial_seq.value(),
            self.mtu,
            self.flow_window,
            self.kind.to_wire(),
            self.socket_id,
            self.cookie,
        ] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out.extend_from_slice(&self.peer_ip);
        for ext in &self.extensions {
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            let ext_type = match ext {
                HsExtension::HsReq(h) | HsExtension::HsRsp(h) => {
                    let delays = (u32::from(h.recv_delay_ms) << 16) | u32::from(h.send_delay_ms);
                    for w in [h.version, h.flags, delays] {
                        out.extend_from_slice(&w.to_be_bytes());
                    }
                    if matches!(ext, HsExtension::HsReq(_)) {
                        EXT_HSREQ
                    } else {
                        EXT_HSRSP
                    }
                }
                HsExtension::KmReq(km) => {
                    km.encode(out);
                    EXT_KMREQ
                }
                HsExtension::KmRsp(r) => {
                    r.encode(out);
                    EXT_KMRSP
                }
                HsExtension::StreamId(s) => {
                    // Stream ID travels as 32-bit words in little-endian byte order (libsrt copies
                    // the string into host-order words, then swaps each word to network order).
                    let mut padded = s.as_bytes().to_vec();
                    padded.resize(s.len().div_ceil(4) * 4, 0);
                    for chunk in padded.chunks_exact(4) {
                        out.extend_from_slice(&[chunk[3], chunk[2], chunk[1], chunk[0]]);
                    }
                    EXT_SID
                }
                HsExtension::Other { ext_type, body } => {
                    out.extend_from_slice(body);
                    out.resize(start + 4 + body.len().div_ceil(4) * 4, 0);
                    *ext_type
                }
            };
            let words = ((out.len() - start - 4) / 4) as u16;
            out[start..start + 2].copy_from_slice(&ext_type.to_be_bytes());
            out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        }
    }

    fn decode(b: &[u8]) -> Result<Handshake, DecodeError> {
        need(b, HS_CIF_LEN, "handshake", HEADER_LEN)?;
        let mut peer_ip = [0u8; 16];
        peer_ip.copy_from_slice(&b[32..48]);
        let version = be32(b, 0);
        let extension_field = u16::from_be_bytes([b[6], b[7]]);
        let mut hs = Handshake {
            version,
            encryption: u16::from_be_bytes([b[4], b[5]]),
            extension_field,
            initial_seq: SeqNo::new(be32(b, 8)),
            mtu: be32(b, 12),
            flow_window: be32(b, 16),
            kind: HandshakeKind::from_wire(be32(b, 20), HEADER_LEN + 20)?,
            socket_id: be32(b, 24),
            cookie: be32(b, 28),
            peer_ip,
            extensions: Vec::new(),
        };
        // Extensions exist only in v5 conclusion messages; induction bodies may carry padding.
        if version < 5 || hs.kind != HandshakeKind::Conclusion {
            return Ok(hs);
        }
        let mut i = HS_CIF_LEN;
        while i + 4 <= b.len() {
            let base = HEADER_LEN + i;
            let ext_type = u16::from_be_bytes([b[i], b[i + 1]]);
            let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]])) * 4;
            let body = &b[i + 4..];
            need(body, len, "handshake extension", base + 4)?;
            let body = &body[..len];
            let ext = match ext_type {
                EXT_HSREQ | EXT_HSRSP => {
                    need(body, 12, "HSREQ/HSRSP", base + 4)?;
                    let delays = be32(body, 8);
                    let h = SrtHs {
                        version: be32(body, 0),
                        flags: be32(body, 4),
                        recv_delay_ms: (delays >> 16) as u16,
                        send_delay_ms: delays as u16,
                    };
                    if ext_type == EXT_HSREQ {
                        HsExtension::HsReq(h)
                    } else {
                        HsExtension::HsRsp(h)
                    }
                }
                EXT_KMREQ => HsExtension::KmReq(KeyMaterial::decode(body, base + 4)?),
                EXT_KMRSP => HsExtension::KmRsp(KmResponse::decode(body, base + 4)?),
                EXT_SID => {
                    if len > MAX_STREAM_ID_LEN {
                        return Err(DecodeError::InvalidField {
                            field: "stream ID length",
                            offset: base + 2,
                            value: len as u32,
                        });
                    }
                    let mut s = Vec::with_capacity(len);
                    for w in body.chunks_exact(4) {
                        s.extend_from_slice(&[w[3], w[2], w[1], w[0]]);
                    }
                    while s.last() == Some(&0) {
                        s.pop();
                    }
                    HsExtension::StreamId(
                        String::from_utf8(s)
                            .map_err(|_| DecodeError::StreamIdNotUtf8 { offset: base + 4 })?,
                    )
                }
                _ => HsExtension::Other {
                    ext_type,
                    body: body.to_vec(),
                },
            };
            hs.extensions.push(ext);
            i += 4 + len;
        }
        Ok(hs)
    }

    pub fn stream_id(&self) -> Option<&str> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::StreamId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn hs_req(&self) -> Option<&SrtHs> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::HsReq(h) => Some(h),
            _ => None,
        })
    }

    pub fn hs_rsp(&self) -> Option<&SrtHs> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::HsRsp(h) => Some(h),
            _ => None,
        })
    }

    pub fn km_req(&self) -> Option<&KeyMaterial> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::KmReq(k) => Some(k),
            _ => None,
        })
    }

    pub fn km_rsp(&self) -> Option<&KmResponse> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::KmRsp(k) => Some(k),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq() -> impl Strategy<Value = SeqNo> {
        (0u32..=SeqNo::MAX).prop_map(SeqNo::new)
    }

    fn key_material() -> impl Strategy<Value = KeyMaterial> {
        (
            1u8..=3,
            any::<[u8; 16]>(),
            prop::sample::select(vec![16usize, 24, 32]),
            any::<u8>(),
        )
            .prop_map(|(keys, salt, key_len, fill)| {
                let n = if keys == 3 { 2 } else { 1 };
                KeyMaterial::new(keys, salt, key_len, vec![fill; 8 + n * key_len])
            })
    }

    fn extension() -> impl Strategy<Value = HsExtension> {
        let hs = (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(
            |(version, flags, r, s)| SrtHs {
                version,
                flags,
                recv_delay_ms: r,
                send_delay_ms: s,
            },
        );
        prop_oneof![
            hs.clone().prop_map(HsExtension::HsReq),
            hs.prop_map(HsExtension::HsRsp),
            key_material().prop_map(HsExtension::KmReq),
            key_material().prop_map(|k| HsExtension::KmRsp(KmResponse::Echo(k))),
            (0u32..10).prop_map(|s| HsExtension::KmRsp(KmResponse::Failure(s))),
            "[a-zA-Z0-9#!:=,/]{1,200}".prop_map(HsExtension::StreamId),
            (
                6u16..20,
                prop::collection::vec(any::<u8>(), 0..8).prop_map(|mut v| {
                    v.resize(v.len().div_ceil(4) * 4, 0);
                    v
                })
            )
                .prop_map(|(ext_type, body)| HsExtension::Other { ext_type, body }),
        ]
    }

    fn handshake() -> impl Strategy<Value = Handshake> {
        (
            (
                any::<u16>(),
                any::<u16>(),
                seq(),
                any::<u32>(),
                any::<u32>(),
            ),
            prop_oneof![
                Just(HandshakeKind::Induction),
                Just(HandshakeKind::Conclusion),
                Just(HandshakeKind::Agreement),
                Just(HandshakeKind::Done),
                Just(HandshakeKind::WaveAHand),
                (0u32..5000).prop_map(HandshakeKind::Reject)
            ],
            (any::<u32>(), any::<u32>(), any::<[u8; 16]>()),
            prop::collection::vec(extension(), 0..5),
        )
            .prop_map(
                |(
                    (encryption, extension_field, initial_seq, mtu, flow_window),
                    kind,
                    (socket_id, cookie, peer_ip),
                    exts,
                )| {
                    Handshake {
                        version: 5,
                        encryption,
                        extension_field,
                        initial_seq,
                        mtu,
                        flow_window,
                        kind,
                        socket_id,
                        cookie,
                        peer_ip,
                        extensions: if kind == HandshakeKind::Conclusion {
                            exts
                        } else {
                            Vec::new()
                        },
                    }
                },
            )
    }

    fn control() -> impl Strategy<Value = Control> {
        let ack = (
            any::<u32>(),
            seq(),
            prop::option::of((any::<[u32; 3]>(), prop::option::of(any::<[u32; 3]>()))),
        )
            .prop_map(|(ack_no, last_ack, info)| {
                Control::Ack(Ack {
                    ack_no,
                    last_ack,
                    info: info.map(|(a, r)| AckInfo {
                        rtt_us: a[0],
                        rtt_var_us: a[1],
                        buffer_available: a[2],
                        rates: r.map(|r| AckRates {
                            packets_per_sec: r[0],
                            capacity_pps: r[1],
                            bytes_per_sec: r[2],
                        }),
                    }),
                })
            });
        prop_oneof![
            handshake().prop_map(Control::Handshake),
            Just(Control::KeepAlive),
            ack,
            prop::collection::vec((seq(), 0u32..1000), 0..20)
                .prop_map(|v| Control::Nak(v.into_iter().map(|(s, n)| (s, s.add_n(n))).collect())),
            Just(Control::CongestionWarning),
            Just(Control::Shutdown),
            any::<u32>().prop_map(|ack_no| Control::AckAck { ack_no }),
            (any::<u32>(), seq(), seq()).prop_map(|(msg_no, first, last)| Control::DropRequest {
                msg_no,
                first,
                last
            }),
            any::<u32>().prop_map(|code| Control::PeerError { code }),
            key_material().prop_map(Control::KmReq),
            key_material().prop_map(|k| Control::KmRsp(KmResponse::Echo(k))),
            (0u32..10).prop_map(|s| Control::KmRsp(KmResponse::Failure(s))),
            (
                5u16..100,
                any::<u32>(),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(subtype, type_info, body)| Control::UserDefined {
                    subtype,
                    type_info,
                    body: body.into()
                }),
        ]
    }

    fn packet() -> impl Strategy<Value = Packet> {
        let data = (
            seq(),
            0u8..4,
            any::<bool>(),
            0u8..3,
            any::<bool>(),
            0u32..(1 << 26),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..1500),
        )
            .prop_map(
                |(
                    seq,
                    pp,
                    in_order,
                    kk,
                    retransmitted,
                    msg_no,
                    timestamp,
                    dest_socket,
                    payload,
                )| {
                    Packet::Data(DataPacket {
                        seq,
                        position: [
                            Position::Middle,
                            Position::Last,
                            Position::First,
                            Position::Solo,
                        ][usize::from(pp)],
                        in_order,
                        key: [KeyParity::None, KeyParity::Even, KeyParity::Odd][usize::from(kk)],
                        retransmitted,
                        msg_no,
                        timestamp,
                        dest_socket,
                        payload: payload.into(),
                    })
                },
            );
        let ctrl = (any::<u32>(), any::<u32>(), control()).prop_map(
            |(timestamp, dest_socket, control)| {
                Packet::Control(ControlPacket {
                    timestamp,
                    dest_socket,
                    control,
                })
            },
        );
        prop_oneof![data, ctrl]
    }

    proptest! {
        #[test]
        fn round_trip(p in packet()) {
            let mut buf = Vec::new();
            p.encode(&mut buf);
            prop_assert_eq!(Packet::decode(buf.into()), Ok(p));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_reencode_stably(
            b in prop::collection::vec(any::<u8>(), 0..600),
            control: bool,
        ) {
            let mut b = b;
            if let (true, Some(first)) = (control, b.first_mut()) {
                *first |= 0x80; // half the cases take the control paths
            }
            if let Ok(p) = Packet::decode(b.into()) {
                // Whatever decodes encodes to bytes that decode to the same packet.
                let mut buf = Vec::new();
                p.encode(&mut buf);
                prop_assert_eq!(Packet::decode(buf.into()), Ok(p));
            }
        }

        #[test]
        fn truncated_packets_are_refused_or_decoded(p in packet(), cut in 0usize..2000) {
            let mut buf = Vec::new();
            p.encode(&mut buf);
            buf.truncate(cut.min(buf.len()));
            let _ = Packet::decode(buf.into());
        }
    }

    #[test]
    fn stream_id_words_are_byte_reversed() {
        let hs = Handshake {
            version: 5,
            encryption: 0,
            extension_field: HS_EXT_CONFIG,
            initial_seq: SeqNo::new(1),
            mtu: 1500,
            flow_window: 8192,
            kind: HandshakeKind::Conclusion,
            socket_id: 7,
            cookie: 9,
            peer_ip: [0; 16],
            extensions: vec![HsExtension::StreamId("abcde".into())],
        };
        let mut out = Vec::new();
        hs.encode(&mut out);
        assert_eq!(
            &out[48..],
            &[0, 5, 0, 2, b'd', b'c', b'b', b'a', 0, 0, 0, b'e']
        );
    }

    #[test]
    fn truncated_header_reports_offset() {
        assert_eq!(
            Packet::decode(Bytes::from_static(&[0x80, 0, 0])),
            Err(DecodeError::Truncated {
                what: "header",
                offset: 3,
                need: 16,
                have: 3
            })
        );
    }

    #[test]
    fn reject_wire_value() {
        assert_eq!(HandshakeKind::Reject(1403).to_wire(), 2403);
        assert_eq!(
            HandshakeKind::from_wire(1010, 0),
            Ok(HandshakeKind::Reject(10))
        );
    }
}
