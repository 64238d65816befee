//! Program-specific information: section assembly across packets (ISO/IEC 13818-1 §2.4.4)
//! with the CRC-32/MPEG-2 check, and the PAT and PMT tables.

use thiserror::Error;

/// CRC-32/MPEG-2 as PSI sections use it (poly 0x04C11DB7, init all ones, no reflection,
/// no final xor): a section including its CRC field checks to 0.
pub const CRC_MPEG2: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);

/// Largest section a PSI table may use (section_length ≤ 1021, plus the 3-byte header).
pub const MAX_PSI_SECTION: usize = 1024;
/// Largest private section (section_length ≤ 4093).
pub const MAX_SECTION: usize = 4096;

pub const TABLE_ID_PAT: u8 = 0x00;
pub const TABLE_ID_CAT: u8 = 0x01;
pub const TABLE_ID_PMT: u8 = 0x02;

/// Why a section or table was refused. Offsets count from the section's table_id byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PsiError {
    #[error("pointer_field {pointer} points past the {available} payload bytes")]
    Pointer { pointer: usize, available: usize },
    #[error("section_length {length} (table_id {table_id:#04x}) exceeds the limit of {max}")]
    SectionLength {
        table_id: u8,
        length: usize,
        max: usize,
    },
    #[error(
        "section of table_id {table_id:#04x} fails CRC-32: carried {carried:#010x}, computed {computed:#010x}"
    )]
    Crc {
        table_id: u8,
        carried: u32,
        computed: u32,
    },
    #[error("section of table_id {table_id:#04x} lost: packets missing before it was complete")]
    Incomplete { table_id: u8 },
    #[error("expected table_id {expected:#04x}, found {found:#04x}")]
    TableId { expected: u8, found: u8 },
    #[error(
        "section_number {section_number} with last_section_number {last_section_number} \
         (table_id {table_id:#04x}{rule})"
    )]
    SectionNumber {
        table_id: u8,
        section_number: u8,
        last_section_number: u8,
        rule: &'static str,
    },
    #[error("section is {len} bytes, too short for its {field} at byte {offset}")]
    Truncated {
        field: &'static str,
        offset: usize,
        len: usize,
    },
}

/// Receives each completed section, or why one was lost.
pub type SectionSink<'a> = dyn FnMut(Result<&[u8], PsiError>) + 'a;

/// Collects the sections of one PID from successive packet payloads.
///
/// Feed it every payload of the PID in order with its payload_unit_start_indicator; each
/// completed section (header, body and CRC, with the CRC checked where the syntax has one)
/// or the reason one was lost goes to `sink`.
#[derive(Debug, Clone, Default)]
pub struct SectionAssembler {
    buf: Vec<u8>,
    /// Whether `buf` holds the start of a section (we are in sync with section boundaries).
    active: bool,
}

impl SectionAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops a partial section, e.g. after a continuity error.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    pub fn push(&mut self, payload_unit_start: bool, payload: &[u8], sink: &mut SectionSink<'_>) {
        if payload_unit_start {
            let Some((&pointer, rest)) = payload.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                sink(Err(PsiError::Pointer {
                    pointer,
                    available: rest.len(),
                }));
                self.reset();
                return;
            }
            if self.active {
                self.buf.extend_from_slice(&rest[..pointer]);
                self.drain(sink);
                if self.active && !self.buf.is_empty() {
                    let table_id = self.buf[0];
                    sink(Err(PsiError::Incomplete { table_id }));
                }
            }
            self.buf.clear();
            self.buf.extend_from_slice(&rest[pointer..]);
            self.active = true;
        } else if self.active {
            self.buf.extend_from_slice(payload);
        } else {
            return;
        }
        self.drain(sink);
    }

    /// Emits every complete section at the front of the buffer.
    fn drain(&mut self, sink: &mut SectionSink<'_>) {
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            // 0xFF where a table_id would be starts the stuffing up to the packet's end.
            if rest.first().is_none_or(|&b| b == 0xFF) {
                if !rest.is_empty() {
                    self.active = false;
                }
                break;
            }
            if rest.len() < 3 {
                break;
            }
            let table_id = rest[0];
            let length = usize::from(u16::from_be_bytes([rest[1], rest[2]]) & 0x0FFF);
            let max = if table_id <= TABLE_ID_PMT {
                MAX_PSI_SECTION - 3
            } else {
                MAX_SECTION - 3
            };
            if length > max {
                sink(Err(PsiError::SectionLength {
                    table_id,
                    length,
                    max,
                }));
                self.active = false;
                break;
            }
            let total = 3 + length;
            if rest.len() < total {
                break;
            }
            sink(check_section(&rest[..total]));
            at += total;
        }
        if self.active {
            self.buf.drain(..at);
        } else {
            self.buf.clear();
        }
    }
}

/// Whether a section's syntax carries a CRC_32: the long form, and the TOT (0x73).
fn has_crc(section: &[u8]) -> bool {
    section[1] & 0x80 != 0 || section[0] == 0x73
}

/// Checks the CRC of a complete section (header included) where it has one.
pub fn check_section(section: &[u8]) -> Result<&[u8], PsiError> {
    if section.len() < 3 {
        return Err(PsiError::Truncated {
            field: "section header",
            offset: 0,
            len: section.len(),
        });
    }
    if has_crc(section) {
        let table_id = section[0];
        if section.len() < 7 {
            return Err(PsiError::Truncated {
                field: "CRC_32",
                offset: 3,
                len: section.len(),
            });
        }
        let (body, crc) = section.split_at(section.len() - 4);
        let carried = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let computed = CRC_MPEG2.checksum(body);
        if carried != computed {
            return Err(PsiError::Crc {
                table_id,
                carried,
                computed,
            });
        }
    }
    Ok(section)
}

/// The long-form header shared by PAT and PMT; `body` is what lies between it and the CRC.
struct LongSection<'a> {
    table_id_extension: u16,
    version: u8,
    current_next: bool,
    section_number: u8,
    last_section_number: u8,
    body: &'a [u8],
}

fn long_section(section: &[u8], expected: u8) -> Result<LongSection<'_>, PsiError> {
    if section.len() < 12 {
        return Err(PsiError::Truncated {
            field: "long section header and CRC",
            offset: 0,
            len: section.len(),
        });
    }
    if section[0] != expected {
        return Err(PsiError::TableId {
            expected,
            found: section[0],
        });
    }
    Ok(LongSection {
        table_id_extension: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1F,
        current_next: section[5] & 1 != 0,
        section_number: section[6],
        last_section_number: section[7],
        body: &section[8..section.len() - 4],
    })
}

fn finish_long_section(
    table_id: u8,
    extension: u16,
    version: u8,
    current_next: bool,
    [section_number, last_section_number]: [u8; 2],
    body: &[u8],
) -> Vec<u8> {
    let length = 5 + body.len() + 4;
    let mut s = Vec::with_capacity(3 + length);
    s.push(table_id);
    // section_syntax_indicator, '0', two reserved bits.
    s.extend_from_slice(&(0xB000 | length as u16).to_be_bytes());
    s.extend_from_slice(&extension.to_be_bytes());
    s.push(0xC0 | ((version & 0x1F) << 1) | u8::from(current_next));
    s.extend_from_slice(&[section_number, last_section_number]);
    s.extend_from_slice(body);
    let crc = CRC_MPEG2.checksum(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// One program of a PAT; program 0 names the network PID instead of a PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatEntry {
    pub program_number: u16,
    pub pid: u16,
}

/// Program Association Table (one section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pat {
    pub transport_stream_id: u16,
    pub version: u8,
    pub current_next: bool,
    pub section_number: u8,
    pub last_section_number: u8,
    pub programs: Vec<PatEntry>,
}

impl Pat {
    /// Parses a complete PAT section (as the assembler delivers it, CRC already checked).
    pub fn parse(section: &[u8]) -> Result<Self, PsiError> {
        let s = long_section(section, TABLE_ID_PAT)?;
        if s.section_number > s.last_section_number {
            return Err(PsiError::SectionNumber {
                table_id: TABLE_ID_PAT,
                section_number: s.section_number,
                last_section_number: s.last_section_number,
                rule: ": the section number is past the last",
            });
        }
        let programs = s
            .body
            .chunks_exact(4)
            .map(|e| PatEntry {
                program_number: u16::from_be_bytes([e[0], e[1]]),
                pid: u16::from_be_bytes([e[2], e[3]]) & 0x1FFF,
            })
            .collect();
        Ok(Self {
            transport_stream_id: s.table_id_extension,
            version: s.version,
            current_next: s.current_next,
            section_number: s.section_number,
            last_section_number: s.last_section_number,
            programs,
        })
    }

    /// PMT PIDs (program 0, the network PID, excluded).
    pub fn pmt_pids(&self) -> impl Iterator<Item = u16> + '_ {
        self.programs
            .iter()
            .filter(|p| p.program_number != 0)
            .map(|p| p.pid)
    }

    /// Encodes as one section with its CRC.
    pub fn to_section(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.programs.len() * 4);
        for p in &self.programs {
            body.extend_from_slice(&p.program_number.to_be_bytes());
            body.extend_from_slice(&(0xE000 | (p.pid & 0x1FFF)).to_be_bytes());
        }
        finish_long_section(
            TABLE_ID_PAT,
            self.transport_stream_id,
            self.version,
            self.current_next,
            [self.section_number, self.last_section_number],
            &body,
        )
    }
}

/// What an elementary stream carries, from its stream_type and descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Mpeg1Video,
    Mpeg2Video,
    H264,
    Hevc,
    Mpeg1Audio,
    Mpeg2Audio,
    AdtsAac,
    LatmAac,
    Ac3,
    EAc3,
    Scte35,
    PrivateSections,
    PrivateData,
    Other(u8),
}

impl StreamKind {
    /// Whether the stream carries PES packets with PTS (audio or video).
    pub fn is_audio_video(self) -> bool {
        !matches!(
            self,
            Self::Scte35 | Self::PrivateSections | Self::PrivateData | Self::Other(_)
        )
    }

    pub fn is_video(self) -> bool {
        matches!(
            self,
            Self::Mpeg1Video | Self::Mpeg2Video | Self::H264 | Self::Hevc
        )
    }
}

/// One elementary stream of a PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    pub stream_type: u8,
    pub pid: u16,
    /// The ES_info descriptor loop, raw.
    pub es_info: Vec<u8>,
}

impl PmtStream {
    /// Descriptors of the ES_info loop as (tag, data); a truncated tail is ignored.
    pub fn descriptors(&self) -> impl Iterator<Item = (u8, &[u8])> {
        descriptors(&self.es_info)
    }

    /// Classifies the stream: the stream_type, refined by DVB/ATSC descriptors for the
    /// types that are ambiguous (0x06 private PES carries AC-3 in DVB).
    pub fn kind(&self) -> StreamKind {
        match self.stream_type {
            0x01 => StreamKind::Mpeg1Video,
            0x02 => StreamKind::Mpeg2Video,
            0x03 => StreamKind::Mpeg1Audio,
            0x04 => StreamKind::Mpeg2Audio,
            0x05 => StreamKind::PrivateSections,
            0x0F => StreamKind::AdtsAac,
            0x11 => StreamKind::LatmAac,
            0x1B => StreamKind::H264,
            0x24 => StreamKind::Hevc,
            0x81 => StreamKind::Ac3,
            0x87 => StreamKind::EAc3,
            0x86 => StreamKind::Scte35,
            0x06 => {
                let mut kind = StreamKind::PrivateData;
                for (tag, data) in self.descriptors() {
                    kind = match (tag, data) {
                        (0x6A, _) | (0x05, b"AC-3") => StreamKind::Ac3,
                        (0x7A, _) | (0x05, b"EAC3") => StreamKind::EAc3,
                        _ => continue,
                    };
                }
                kind
            }
            other => StreamKind::Other(other),
        }
    }
}

fn descriptors(mut bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = bytes.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let data = rest.get(..usize::from(len))?;
        bytes = &rest[usize::from(len)..];
        Some((tag, data))
    })
}

/// Program Map Table (one section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmt {
    pub program_number: u16,
    pub version: u8,
    pub current_next: bool,
    pub pcr_pid: u16,
    /// The program_info descriptor loop, raw.
    pub program_info: Vec<u8>,
    pub streams: Vec<PmtStream>,
}

impl Pmt {
    pub fn parse(section: &[u8]) -> Result<Self, PsiError> {
        let s = long_section(section, TABLE_ID_PMT)?;
        if (s.section_number, s.last_section_number) != (0, 0) {
            return Err(PsiError::SectionNumber {
                table_id: TABLE_ID_PMT,
                section_number: s.section_number,
                last_section_number: s.last_section_number,
                rule: ": a PMT is one section, numbered 0",
            });
        }
        let truncated = |field, offset| PsiError::Truncated {
            field,
            offset: offset + 8,
            len: section.len(),
        };
        let b = s.body;
        if b.len() < 4 {
            return Err(truncated("PCR_PID and program_info_length", 0));
        }
        let pcr_pid = u16::from_be_bytes([b[0], b[1]]) & 0x1FFF;
        let info_len = usize::from(u16::from_be_bytes([b[2], b[3]]) & 0x0FFF);
        let program_info = b
            .get(4..4 + info_len)
            .ok_or(truncated("program_info", 4))?
            .to_vec();
        let mut at = 4 + info_len;
        let mut streams = Vec::new();
        while at < b.len() {
            let e = b
                .get(at..at + 5)
                .ok_or(truncated("elementary stream entry", at))?;
            let es_len = usize::from(u16::from_be_bytes([e[3], e[4]]) & 0x0FFF);
            let es_info = b
                .get(at + 5..at + 5 + es_len)
                .ok_or(truncated("ES_info", at + 5))?
                .to_vec();
            streams.push(PmtStream {
                stream_type: e[0],
                pid: u16::from_be_bytes([e[1], e[2]]) & 0x1FFF,
                es_info,
            });
            at += 5 + es_len;
        }
        Ok(Self {
            program_number: s.table_id_extension,
            version: s.version,
            current_next: s.current_next,
            pcr_pid,
            program_info,
            streams,
        })
    }

    /// Encodes as one section with its CRC.
    pub fn to_section(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(0xE000 | (self.pcr_pid & 0x1FFF)).to_be_bytes());
        body.extend_from_slice(&(0xF000 | self.program_info.len() as u16).to_be_bytes());
        body.extend_from_slice(&self.program_info);
        for s in &self.streams {
            body.push(s.stream_type);
            body.extend_from_slice(&(0xE000 | (s.pid & 0x1FFF)).to_be_bytes());
            body.extend_from_slice(&(0xF000 | s.es_info.len() as u16).to_be_bytes());
            body.extend_from_slice(&s.es_info);
        }
        finish_long_section(
            TABLE_ID_PMT,
            self.program_number,
            self.version,
            self.current_next,
            [0, 0],
            &body,
        )
    }
}

/// Splits a section into TS packet payloads (pointer_field in the first), 0xFF-stuffed;
/// used by tests and by anything that needs to emit PSI.
pub fn packetize_section(section: &[u8]) -> Vec<[u8; 184]> {
    let mut data = Vec::with_capacity(section.len() + 1);
    data.push(0);
    data.extend_from_slice(section);
    data.chunks(184)
        .map(|c| {
            let mut p = [0xFF; 184];
            p[..c.len()].copy_from_slice(c);
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn collect(
        asm: &mut SectionAssembler,
        pusi: bool,
        payload: &[u8],
    ) -> Vec<Result<Vec<u8>, PsiError>> {
        let mut out = Vec::new();
        asm.push(pusi, payload, &mut |r| out.push(r.map(<[u8]>::to_vec)));
        out
    }

    fn sample_pmt(streams: usize) -> Pmt {
        Pmt {
            program_number: 1,
            version: 3,
            current_next: true,
            pcr_pid: 0x100,
            program_info: vec![],
            streams: (0..streams)
                .map(|i| PmtStream {
                    stream_type: 0x1B,
                    pid: 0x100 + i as u16,
                    es_info: vec![0x0A, 4, b'e', b'n', b'g', 0],
                })
                .collect(),
        }
    }

    #[test]
    fn crc_matches_known_pat() {
        // The PAT ffmpeg writes for program 1 → PMT PID 0x1000, tsid 1.
        let pat = Pat {
            transport_stream_id: 1,
            version: 0,
            current_next: true,
            section_number: 0,
            last_section_number: 0,
            programs: vec![PatEntry {
                program_number: 1,
                pid: 0x1000,
            }],
        };
        let s = pat.to_section();
        assert_eq!(&s[s.len() - 4..], &[0x2A, 0xB1, 0x04, 0xB2]);
        assert_eq!(Pat::parse(check_section(&s).unwrap()).unwrap(), pat);
    }

    #[test]
    fn assembles_a_section_spanning_packets() {
        let pmt = sample_pmt(40); // 40 × 11 bytes: three packets
        let section = pmt.to_section();
        let payloads = packetize_section(&section);
        assert!(payloads.len() >= 3);
        let mut asm = SectionAssembler::new();
        let mut got = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            got.extend(collect(&mut asm, i == 0, p));
        }
        assert_eq!(got, vec![Ok(section.clone())]);
        assert_eq!(Pmt::parse(&section).unwrap(), pmt);
        assert_eq!(pmt.streams[0].kind(), StreamKind::H264);
    }

    #[test]
    fn detects_crc_errors_and_lost_continuation() {
        let mut section = sample_pmt(2).to_section();
        let n = section.len();
        section[n - 6] ^= 1;
        let mut asm = SectionAssembler::new();
        let got = collect(&mut asm, true, &packetize_section(&section)[0]);
        assert!(matches!(got[..], [Err(PsiError::Crc { table_id: 2, .. })]));

        let long = sample_pmt(40).to_section();
        let payloads = packetize_section(&long);
        let mut asm = SectionAssembler::new();
        assert!(collect(&mut asm, true, &payloads[0]).is_empty());
        // The continuation is lost; the next section starts.
        let got = collect(&mut asm, true, &payloads[0]);
        assert_eq!(got, vec![Err(PsiError::Incomplete { table_id: 2 })]);
    }

    #[test]
    fn ac3_in_private_pes_is_recognised() {
        let s = PmtStream {
            stream_type: 0x06,
            pid: 0x101,
            es_info: vec![0x6A, 1, 0],
        };
        assert_eq!(s.kind(), StreamKind::Ac3);
        assert_eq!(
            PmtStream {
                stream_type: 0x86,
                ..s
            }
            .kind(),
            StreamKind::Scte35
        );
    }

    proptest! {
        #[test]
        fn assembler_never_panics(chunks in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..184)), 0..20)) {
            let mut asm = SectionAssembler::new();
            for (pusi, payload) in &chunks {
                asm.push(*pusi, payload, &mut |r| {
                    if let Ok(s) = r {
                        let _ = Pat::parse(s);
                        let _ = Pmt::parse(s);
                    }
                });
            }
        }

        #[test]
        fn pmt_round_trips(pcr_pid in 0u16..0x2000, version in 0u8..32,
            streams in proptest::collection::vec((any::<u8>(), 0u16..0x2000,
                proptest::collection::vec(any::<u8>(), 0..10)), 0..30)) {
            let pmt = Pmt { program_number: 7, version, current_next: true, pcr_pid,
                program_info: vec![], streams: streams.into_iter()
                    .map(|(stream_type, pid, es_info)| PmtStream { stream_type, pid, es_info })
                    .collect() };
            let section = pmt.to_section();
            let mut asm = SectionAssembler::new();
            let mut got = Vec::new();
            for (i, p) in packetize_section(&section).iter().enumerate() {
                got.extend(collect(&mut asm, i == 0, p));
            }
            prop_assert_eq!(got.len(), 1);
            let parsed = Pmt::parse(got[0].as_ref().unwrap()).unwrap();
            prop_assert_eq!(parsed, pmt);
        }

        #[test]
        fn pat_round_trips(tsid: u16, last: u8, n: u8, programs in proptest::collection::vec((any::<u16>(), 0u16..0x2000), 0..100)) {
            let pat = Pat { transport_stream_id: tsid, version: 1, current_next: true,
                section_number: n.min(last), last_section_number: last,
                programs: programs.into_iter().map(|(program_number, pid)| PatEntry { program_number, pid }).collect() };
            let s = pat.to_section();
            prop_assert_eq!(Pat::parse(check_section(&s).unwrap()).unwrap(), pat.clone());
            if last < u8::MAX {
                let past = Pat { section_number: last + 1, ..pat };
                let refused = matches!(
                    Pat::parse(check_section(&past.to_section()).unwrap()),
                    Err(PsiError::SectionNumber { .. })
                );
                prop_assert!(refused);
            }
        }
    }
}
